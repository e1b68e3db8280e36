<?php
// A persistent connection lives as long as its PHP thread: it counts the thread's requests.
$db = new PDO('sqlite::memory:', null, null, [PDO::ATTR_PERSISTENT => true]);
$db->exec('CREATE TABLE IF NOT EXISTS hits (n INTEGER)');
$db->exec('INSERT INTO hits VALUES (1)');
echo $db->query('SELECT COUNT(*) FROM hits')->fetchColumn();
