#!/usr/bin/env bash
# Builds PHP from Debian's php8.4 source package into a cache prefix keyed by PHP series,
# variant and configure flags. A second run finds the finished prefix and only prints it.
# Prints the prefix path as the last line of stdout.
#
#   PHP_GATEWAY_CACHE   cache root (default ~/.cache/php-gateway)
#   PHP_SERIES          8.4 (default) or 8.2 (bookworm fallback)
#   PHP_VARIANT         zts (default): ZTS embed SAPI as libphp.so, what the gateway runs;
#                       fpm: NTS php-fpm with the same extensions, the benchmark's baseline
#                       (built as the official php:8.4-fpm image is)
#   PHP_WITH_FPM        1: the zts variant also builds php-fpm (sbin/php-fpm, ZTS) in the
#                       same compile, for the tests' nginx + php-fpm comparisons
#   PHP_PGO             1: the zts variant is built twice, the second time guided by a
#                       profile of php-src's own benchmarks and tests run on the first
#                       (profile-guided optimisation); 0 (default): one plain -O2 build. Off
#                       by default: this profile speeds up small pages but not framework
#                       requests (docs/benchmarks.md, "The PHP engine")
#   PHP_BUILD_JOBS      make -j (default: nproc)
set -euo pipefail

series=${PHP_SERIES:-8.4}
cache=${PHP_GATEWAY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/php-gateway}
jobs=${PHP_BUILD_JOBS:-$(nproc)}
script_rev=3   # bump when the build steps change in a way that needs a rebuild

# Extensions Laravel, Symfony and WordPress need; see docs/configuration.md.
variant=${PHP_VARIANT:-zts}
case "$variant" in
  zts) sapi_flags=(--enable-embed=shared --enable-zts --disable-zend-signals
                   --enable-zend-max-execution-timers)
       # PHP_WITH_FPM=1 (the Makefile's): php-fpm out of the same compile, for the e2e tests
       # that hold php-gateway's answers against nginx + php-fpm built from the same source
       if [ "${PHP_WITH_FPM:-0}" = 1 ]; then
         sapi_flags+=(--enable-fpm --with-fpm-user=www-data --with-fpm-group=www-data)
       fi ;;
  fpm) sapi_flags=(--enable-fpm --with-fpm-user=www-data --with-fpm-group=www-data) ;;
  *) echo "build-php: PHP_VARIANT must be zts or fpm, got '$variant'" >&2; exit 2 ;;
esac
cflags="-O2 -g -fno-omit-frame-pointer"
# libphp.so is -fPIC: by default every call between its own exported functions goes through
# the PLT and none of them can be inlined (ELF interposition), and its plain __thread variables
# (pcre's match data, spl's autoloaders) take __tls_get_addr calls. php-fpm, an executable,
# pays neither. Binding its own symbols locally and making all its TLS initial-exec (it is
# STATIC_TLS already, for TSRM's cache) cut callgrind's instructions per request of the PHP
# thread by 1.3-2.5% (bench/www's bootstrap and compute pages, bench/symfony's route), to what
# php-fpm built ZTS executes (docs/benchmarks.md, "The PHP engine: ZTS against php-fpm").
zts_tuning=()
pgo=0
if [ "$variant" = zts ]; then
  cflags+=" -fno-semantic-interposition -ftls-model=initial-exec"
  ldflags="-Wl,-Bsymbolic-functions"
  case "${PHP_PGO:-0}" in
    1) pgo=1 ;;
    0) ;;
    *) echo "build-php: PHP_PGO must be 1 or 0, got '${PHP_PGO}'" >&2; exit 2 ;;
  esac
  zts_tuning=("$cflags" "$ldflags" "pgo=$pgo")
fi
configure_flags=(
  "${sapi_flags[@]}"
  --disable-cgi --disable-phpdbg
  --enable-opcache
  --enable-bcmath --enable-calendar --enable-ctype --with-curl --enable-dom --enable-exif
  --enable-fileinfo --enable-filter --enable-gd --with-jpeg --with-webp --with-freetype
  --with-iconv --enable-intl --enable-mbstring --with-mysqli=mysqlnd --enable-mysqlnd
  --with-openssl --with-pdo-mysql=mysqlnd --with-pdo-pgsql --with-pdo-sqlite --with-sqlite3
  --enable-session --enable-simplexml --with-sodium --enable-tokenizer --enable-xml
  --enable-xmlreader --enable-xmlwriter --with-zip --with-zlib --enable-sockets
  --with-password-argon2 --enable-pcntl
)
build_deps=(
  build-essential autoconf bison re2c pkg-config dpkg-dev xz-utils curl
  libxml2-dev libsqlite3-dev libssl-dev libcurl4-openssl-dev libonig-dev libpng-dev
  libjpeg-dev libwebp-dev libfreetype6-dev libicu-dev libzip-dev libsodium-dev libpq-dev
  zlib1g-dev libargon2-dev
)

key=$(printf '%s\n' "$series" "$script_rev" "${configure_flags[@]}" ${zts_tuning[@]+"${zts_tuning[@]}"} \
      | sha256sum | cut -c1-12)
prefix="$cache/php-$series-$variant-$key"
log() { echo "build-php: $*" >&2; }

if [ -f "$prefix/.complete" ]; then
  log "cached: $(cat "$prefix/.complete") in $prefix"
  echo "$prefix"
  exit 0
fi

need_apt_update=0
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)

if [ "$series" = "8.4" ]; then
  # php8.4 comes from trixie's source package; bookworm's own apt lists stay in charge of binaries.
  src_list=/etc/apt/sources.list.d/php-gateway-trixie-src.sources
  if [ ! -f "$src_list" ]; then
    "${sudo_cmd[@]}" tee "$src_list" >/dev/null <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    need_apt_update=1
  fi
elif [ "$series" = "8.2" ]; then
  src_list=/etc/apt/sources.list.d/php-gateway-bookworm-src.sources
  if [ ! -f "$src_list" ]; then
    "${sudo_cmd[@]}" tee "$src_list" >/dev/null <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian http://deb.debian.org/debian-security
Suites: bookworm bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    need_apt_update=1
  fi
else
  log "PHP_SERIES must be 8.4 or 8.2, got '$series'"
  exit 2
fi

missing=()
for p in "${build_deps[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "$need_apt_update" = 1 ] || [ ${#missing[@]} -gt 0 ] || ! apt-cache showsrc "php$series" >/dev/null 2>&1 \
   || [ -z "$(apt-cache showsrc "php$series" 2>/dev/null)" ]; then
  log "apt-get update"
  "${sudo_cmd[@]}" apt-get update -qq || log "apt-get update reported errors (continuing)"
fi
if [ ${#missing[@]} -gt 0 ]; then
  log "installing build dependencies: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# The mirror's index can name a release whose files it does not serve (yet): try the indexed
# versions newest first, then a pinned release fetched from the pool by hand, its .dsc checked
# against the hash below and the tarballs against the .dsc by dpkg-source.
pinned_version=8.4.24-1~deb13u1
pinned_dsc_sha256=fd84ce153abc1af23514100a25d04acd3c728f5c4b5c30c3e1a0788ef9c780eb
pool=http://deb.debian.org/debian/pool/main/p/php8.4

fetch_pinned() {
  local dsc="php8.4_$pinned_version.dsc" f
  curl -fsS --retry 2 -o "$dsc" "$pool/$dsc" || return 1
  echo "$pinned_dsc_sha256  $dsc" | sha256sum -c --quiet - >&2 || return 1
  for f in $(awk '/^Checksums-Sha256:/ {p=1; next} /^[^ ]/ {p=0} p {print $3}' "$dsc"); do
    curl -fsS --retry 2 -o "$f" "$pool/$f" || return 1
  done
  dpkg-source -x "$dsc" >&2
}

mapfile -t versions < <(apt-cache showsrc "php$series" 2>/dev/null | awk '/^Version:/ {print $2}' | sort -Vru)
if [ "$series" = "8.4" ] && ! printf '%s\n' "${versions[@]}" | grep -qxF "$pinned_version"; then
  versions+=("$pinned_version")
fi
[ ${#versions[@]} -gt 0 ] || { log "no php$series source package found"; exit 1; }
work=""
for version in "${versions[@]}"; do   # one fetched before wins: no download
  if [ -f "$cache/src/php$series-$version/.unpacked" ]; then work="$cache/src/php$series-$version"; break; fi
done
if [ -z "$work" ]; then
  for version in "${versions[@]}"; do
    work="$cache/src/php$series-$version"
    rm -rf "$work" && mkdir -p "$work"
    log "fetching php$series $version source"
    if (cd "$work" && apt-get source -qq "php$series=$version" >&2) \
       || { [ "$version" = "$pinned_version" ] && (cd "$work" && fetch_pinned); }; then
      touch "$work/.unpacked"
      break
    fi
    log "php$series $version could not be fetched; trying an older one"
    rm -rf "$work"
    work=""
  done
  [ -n "$work" ] || { log "no php$series source could be fetched (tried ${versions[*]})"; exit 1; }
fi
upstream=${version%%-*}
srcdir=$(find "$work" -maxdepth 1 -mindepth 1 -type d -name "php$series-*" | head -1)
[ -n "$srcdir" ] || { log "unpacked source directory not found in $work"; exit 1; }

# The profile comes from php-src's own code only, never from bench/'s pages, so the benchmark
# measures pages the optimiser did not see: Zend's two benchmark scripts, then every fourth of
# php-src's tests for the engine and the extensions every framework leans on (arrays, strings,
# SPL, PCRE, JSON, dates), OPcache on as in production. A test's pass or failure does not
# matter here, only that its code ran.
pgo_train() {
  local php="$build/sapi/cli/php" t
  local ini=(-d "zend_extension=$build/modules/opcache.so" -d opcache.enable_cli=1
             -d opcache.jit=disable -d memory_limit=512M)
  "$php" -n "${ini[@]}" "$srcdir/Zend/bench.php"
  "$php" -n "${ini[@]}" "$srcdir/Zend/micro_bench.php"
  rm -rf "$build/pgo-tests" && mkdir -p "$build/pgo-tests"
  # run-tests.php writes its .out/.diff files next to each test: run copies, not the source
  for t in Zend/tests ext/standard/tests ext/spl/tests ext/pcre/tests ext/json/tests ext/date/tests; do
    mkdir -p "$build/pgo-tests/$(dirname "$t")" && cp -r "$srcdir/$t" "$build/pgo-tests/$t"
  done
  cd "$build/pgo-tests"
  find Zend ext -name '*.phpt' | LC_ALL=C sort | awk 'NR % 4 == 1' >tests.txt
  TEST_PHP_EXECUTABLE="$php" NO_INTERACTION=1 SKIP_SLOW_TESTS=1 SKIP_ONLINE_TESTS=1 \
    timeout 600 "$php" -n "$srcdir/run-tests.php" -q -j"$jobs" --offline "${ini[@]}" \
    -r tests.txt || true
  cd "$build"
}

build="$work/build-$key"
rm -rf "$build" && mkdir -p "$build"
cd "$srcdir"
# Debian's patches touch config.m4 files; regenerate configure from them.
if [ ! -f .buildconf-$key ]; then
  PHP_AUTOCONF=autoconf PHP_AUTOHEADER=autoheader ./buildconf --force >&2
  touch .buildconf-$key
fi
cd "$build"
log "configuring into $prefix"
"$srcdir/configure" --prefix="$prefix" --with-config-file-path="$prefix/etc" \
  --with-config-file-scan-dir="$prefix/etc/conf.d" "${configure_flags[@]}" \
  CFLAGS="$cflags" LDFLAGS="${ldflags:-}" >"$build/configure.log" 2>&1 \
  || { tail -40 "$build/configure.log" >&2; exit 1; }
if [ "$variant" = zts ]; then
  # With an executable SAPI (the CLI) configured, PHP keeps libtool's static objects, so every
  # file is compiled twice, with -fPIC for libphp.so and without for the executables. The
  # executables link the PIC objects just as well: one compile per file, half the build time,
  # and one profile per object for the guided build below.
  sed -i '0,/^build_old_libs=yes$/s//build_old_libs=no/' libtool
  sed -i -E '/^BUILD_(CLI|FPM) = /s/:\.lo=\.o\)/)/g' Makefile   # link the .lo (PIC) objects
fi
if [ "$pgo" = 1 ]; then
  log "compiling with -j$jobs, instrumented for profile-guided optimisation (8-12 minutes on 2 cores)"
  make -j"$jobs" PROF_FLAGS=-fprofile-generate >"$build/make-instrumented.log" 2>&1 \
    || { tail -40 "$build/make-instrumented.log" >&2; exit 1; }
  find . -name '*.gcda' -delete
  log "training on php-src's benchmarks and tests (2-4 minutes)"
  pgo_train >"$build/train.log" 2>&1 || { tail -40 "$build/train.log" >&2; exit 1; }
  log "$(find . -name '*.gcda' | wc -l) profiles written; compiling again, guided by them"
  make prof-clean >/dev/null   # objects and binaries out, the .gcda profiles stay
  # -fprofile-partial-training: code the training never ran keeps the plain -O2 treatment
  # instead of being optimised for size as cold, since applications run paths it did not.
  make -j"$jobs" PROF_FLAGS="-fprofile-use -fprofile-partial-training -fprofile-correction -Wno-missing-profile" \
    >"$build/make.log" 2>&1 || { tail -40 "$build/make.log" >&2; exit 1; }
else
  log "compiling with -j$jobs (takes 8-20 minutes on 2 cores)"
  make -j"$jobs" >"$build/make.log" 2>&1 || { tail -40 "$build/make.log" >&2; exit 1; }
fi
rm -rf "$prefix"
make install >"$build/install.log" 2>&1 || { tail -40 "$build/install.log" >&2; exit 1; }
mkdir -p "$prefix/etc/conf.d"
ln -sfn "$srcdir" "$prefix/source"   # php-src on disk, for reading SAPI internals
echo "php $upstream ($version) $variant flags-key $key" >"$prefix/.complete"
log "done: $prefix"
echo "$prefix"
