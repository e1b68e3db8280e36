/* The gateway's PHP extension: functions PHP code uses to talk to php-gateway. */
#ifndef PHP_GATEWAY_EXT_H
#define PHP_GATEWAY_EXT_H

#include "php.h"

extern zend_module_entry php_gateway_module_entry;

/* bridge/sapi.c: the pg_slot of the request running on this thread, or NULL. */
void *php_gateway_current_slot(void);

#endif
