#!/usr/bin/env bash
# Cross-build relayq for 64-bit Windows on Debian 12, package it as an MSI,
# and run its unit tests and the Wine integration tests
# (tests/integration/test_windows_*.py) under Wine.
#
# Debian ships no mingw-w64 builds of OpenSSL, libevent, libyaml or SQLite.
# This script fetches Debian's source packages of the versions that the
# Linux build uses and cross-builds them as static libraries. Each one is
# cached in a directory named after its version, so a run that finds all
# four in the cache only configures and builds relayq.
#
# Usage: packaging/windows/build.sh [--deps-only] [--no-test] [--unit-only]
#                                   [--refresh] [--builddir DIR]
#
#   --deps-only     build and check the dependencies, not relayq
#   --no-test       run nothing under Wine
#   --unit-only     run the unit tests under Wine, not the integration test
#   --refresh       look up the source versions again, for example after a
#                   fallback to an older version (see build_dependency)
#   --builddir DIR  relayq's build directory (default: build-win)
#
# Environment:
#   RELAYQ_WIN_CACHE  cache directory
#                     (default: ${XDG_CACHE_HOME:-$HOME/.cache}/relayq-win)
#   JOBS              parallel compile jobs (default: 2)
#   WINEPREFIX        Wine prefix for the tests (default: CACHE/wineprefix)
set -euo pipefail

# Revisions of the build recipes below. Bump one when its recipe changes, so
# that the cache rebuilds that dependency.
declare -A recipe_revisions=([openssl]=1 [libyaml]=2 [sqlite3]=2 [libevent]=2)
triple=x86_64-w64-mingw32

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(cd "$script_dir/../.." && pwd)
cache_dir=${RELAYQ_WIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/relayq-win}
build_dir=$repo_dir/build-win
jobs=${JOBS:-2}
deps_only=0
run_tests=1
run_integration=1
refresh=0

# Debian packages for the toolchain, the source downloads, the dependency
# builds, Wine and the integration test (pytest, aiosmtpd and PyYAML for
# the harness, openssl for its certificates, swaks as the SMTP client), and
# the MSI (wixl builds it from relayq.wxs, msitools' msibuild edits it).
tool_packages=(
	gcc-mingw-w64-x86-64 binutils-mingw-w64-x86-64 mingw-w64-x86-64-dev
	wine wine64 cmake meson ninja-build pkg-config dpkg-dev make perl gcc tcl
	python3-pytest python3-aiosmtpd python3-yaml openssl swaks wixl msitools
)

log() {
	echo "build.sh: $*" >&2
}

die() {
	log "$*"
	exit 1
}

usage() {
	sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"
}

parse_args() {
	while [ $# -gt 0 ]; do
		case $1 in
		--deps-only) deps_only=1 ;;
		--no-test) run_tests=0 ;;
		--unit-only) run_integration=0 ;;
		--refresh) refresh=1 ;;
		--builddir)
			[ $# -ge 2 ] || die "--builddir requires a directory"
			build_dir=$(realpath -m "$2")
			shift
			;;
		-h | --help)
			usage
			exit 0
			;;
		*) die "unknown argument: $1 (see --help)" ;;
		esac
		shift
	done
}

# Lowers the priority of this script and everything it starts, because the
# dependency builds take minutes of CPU on shared machines.
lower_priority() {
	renice -n 19 -p $$ > /dev/null 2>&1 || true
}

install_tools() {
	local missing=() package status

	for package in "${tool_packages[@]}"; do
		status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
		if [ "$status" != "install ok installed" ]; then
			missing+=("$package")
		fi
	done
	[ "${#missing[@]}" -eq 0 ] && return 0

	if [ "$(id -u)" -ne 0 ]; then
		die "missing Debian packages; as root run: apt-get install ${missing[*]}"
	fi
	log "installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
	    "${missing[@]}" < /dev/null
}

# Private APT state, so that the deb-src lines and their package lists never
# touch the machine's own APT configuration.
apt_dir=
apt_opts=()

cleanup() {
	if [ -n "$apt_dir" ]; then
		rm -rf "$apt_dir"
	fi
}

# Writes deb-src lines for the Debian 12 archives that the machine already
# uses, read from its own APT configuration, and downloads their Sources
# lists into a temporary directory.
apt_prepare() {
	[ -n "$apt_dir" ] && return 0

	apt_dir=$(mktemp -d "${TMPDIR:-/tmp}/relayq-win-apt.XXXXXX")
	mkdir -p "$apt_dir/lists/partial" "$apt_dir/download"
	# The $(...) fields are apt-get's format keys, not shell expansions.
	# shellcheck disable=SC2016
	apt-get indextargets --format '$(TARGET_OF) $(REPO_URI) $(RELEASE) $(COMPONENT)' |
	    awk '$1 == "deb" && $3 ~ /^bookworm/ { print "deb-src", $2, $3, $4 }' |
	    sort -u > "$apt_dir/sources.list"
	[ -s "$apt_dir/sources.list" ] ||
	    die "the machine's APT configuration names no bookworm archive"

	# APT downloads as the _apt user where it can, and warns when that user
	# cannot write the target directory.
	chmod 755 "$apt_dir"
	if [ "$(id -u)" -eq 0 ] && id _apt > /dev/null 2>&1; then
		chown _apt "$apt_dir/lists/partial" "$apt_dir/download"
	fi

	apt_opts=(
		-o "Dir::Etc::SourceList=$apt_dir/sources.list"
		-o "Dir::Etc::SourceParts=/dev/null"
		-o "Dir::State::Lists=$apt_dir/lists"
	)
	log "fetching source package lists for: $(awk '{print $2, $3}' "$apt_dir/sources.list" | paste -sd, -)"
	apt-get "${apt_opts[@]}" -q update < /dev/null > "$apt_dir/update.log" 2>&1 ||
	    { cat "$apt_dir/update.log" >&2; die "apt-get update of the private source lists failed"; }
}

# Prints the source version of the Debian package that the Linux build
# links against, or nothing when that package is not installed.
installed_source_version() {
	dpkg-query -W -f='${source:Version}' "$1" 2>/dev/null || true
}

# Prints the versions of source package $1 in the archive that are not
# newer than $2, newest first, so that a version that is missing or cannot
# be downloaded falls back to an older one.
archive_source_versions() {
	local source=$1 wanted=$2 version

	apt-cache "${apt_opts[@]}" showsrc "$source" | awk '/^Version:/ { print $2 }' |
	    sort -u | while read -r version; do
		if [ -z "$wanted" ] || dpkg --compare-versions "$version" le "$wanted"; then
			echo "$version"
		fi
	done | sort -r -V
}

# Downloads and unpacks source package $1 version $2 into directory $3, with
# Debian's patches applied. The downloaded files stay in the cache.
fetch_source() {
	local source=$1 version=$2 dest=$3
	local store="$cache_dir/src/${source}_${version//:/_}"

	if [ ! -e "$store/.complete" ]; then
		apt_prepare
		rm -rf "$store"
		mkdir -p "$store"
		log "downloading source package $source $version"
		rm -rf "${apt_dir:?}/download/"*
		if ! (cd "$apt_dir/download" &&
		    apt-get "${apt_opts[@]}" -q source --download-only "$source=$version" < /dev/null); then
			rm -rf "$store"
			return 1
		fi
		mv "$apt_dir/download/"* "$store/"
		touch "$store/.complete"
	fi

	# dpkg-source checks the files against the .dsc checksums. It only warns
	# that it cannot verify the .dsc signature without debian-keyring, and
	# APT already checked the files against the signed archive index.
	rm -rf "$dest"
	dpkg-source --no-copy -x "$store"/*.dsc "$dest" > "$dest.unpack.log" 2>&1 ||
	    { cat "$dest.unpack.log" >&2; die "unpacking $source $version failed"; }
}

cmake_build() {
	local src=$1 work=$2 prefix=$3
	shift 3

	nice -n 19 cmake -S "$src" -B "$work" -G Ninja \
	    -DCMAKE_TOOLCHAIN_FILE="$script_dir/toolchain-$triple.cmake" \
	    -DCMAKE_BUILD_TYPE=Release \
	    -DCMAKE_INSTALL_PREFIX="$prefix" \
	    -DBUILD_SHARED_LIBS=OFF \
	    "$@"
	nice -n 19 cmake --build "$work" -j "$jobs"
	nice -n 19 cmake --install "$work"
}

# OpenSSL compiles its data and module directories into libcrypto, and
# reads openssl.cnf from the first. A service running as LocalSystem loads
# them, so on Windows they must be directories that only administrators can
# create. The build machine's prefix would become a path like C:\root\...,
# which any user can create.
openssl_windows_dir="C:/Program Files/relayq/ssl"

build_openssl() {
	local src=$1 prefix=$2
	local dirs=(
		OPENSSLDIR="$openssl_windows_dir"
		ENGINESDIR="$openssl_windows_dir/engines-3"
		MODULESDIR="$openssl_windows_dir/ossl-modules"
	)

	# Configure runs in the source tree, so the tree must be fresh.
	(cd "$src" &&
	    nice -n 19 ./Configure mingw64 --cross-compile-prefix="$triple-" \
	        no-shared no-tests --prefix="$prefix" --libdir=lib &&
	    nice -n 19 make -j "$jobs" "${dirs[@]}" build_libs &&
	    nice -n 19 make "${dirs[@]}" install_dev)
}

build_libyaml() {
	local src=$1 prefix=$2

	cmake_build "$src" "$src/build-$triple" "$prefix" -DBUILD_TESTING=OFF
	mkdir -p "$prefix/lib/pkgconfig"
	# yaml.h marks its functions __declspec(dllimport) on Windows unless
	# YAML_DECLARE_STATIC is defined.
	cat > "$prefix/lib/pkgconfig/yaml-0.1.pc" <<-EOF
	prefix=$prefix
	libdir=\${prefix}/lib
	includedir=\${prefix}/include

	Name: LibYAML
	Description: Library to parse and emit YAML
	Version: $(upstream_version "$3")
	Cflags: -I\${includedir} -DYAML_DECLARE_STATIC
	Libs: -L\${libdir} -lyaml
	EOF
}

build_libevent() {
	local src=$1 prefix=$2 openssl_prefix=$4

	cmake_build "$src" "$src/build-$triple" "$prefix" \
	    -DCMAKE_FIND_ROOT_PATH="$openssl_prefix" \
	    -DOPENSSL_ROOT_DIR="$openssl_prefix" \
	    -DOPENSSL_USE_STATIC_LIBS=ON \
	    -DEVENT__LIBRARY_TYPE=STATIC \
	    -DEVENT__DISABLE_OPENSSL=OFF \
	    -DEVENT__DISABLE_TESTS=ON \
	    -DEVENT__DISABLE_REGRESS=ON \
	    -DEVENT__DISABLE_SAMPLES=ON \
	    -DEVENT__DISABLE_BENCHMARK=ON
	write_libevent_pc "$prefix"
}

# Replaces the .pc files that libevent 2.1.12's CMake build writes, because
# on Windows they list the system libraries as -Lws2_32 instead of -lws2_32
# and OpenSSL as -L/path/libssl.a, so static links fail.
write_libevent_pc() {
	local prefix=$1 name
	local system_libs="-lws2_32 -lshell32 -ladvapi32 -liphlpapi"

	for name in libevent libevent_core libevent_extra libevent_openssl; do
		cat > "$prefix/lib/pkgconfig/$name.pc" <<-EOF
		prefix=$prefix
		libdir=\${prefix}/lib
		includedir=\${prefix}/include

		Name: $name
		Description: libevent event notification library ($name)
		Version: $(libevent_pc_version "$prefix")
		Cflags: -I\${includedir}
		EOF
	done

	cat >> "$prefix/lib/pkgconfig/libevent.pc" <<-EOF
	Libs: -L\${libdir} -levent
	Libs.private: $system_libs
	EOF
	cat >> "$prefix/lib/pkgconfig/libevent_core.pc" <<-EOF
	Libs: -L\${libdir} -levent_core
	Libs.private: $system_libs
	EOF
	cat >> "$prefix/lib/pkgconfig/libevent_extra.pc" <<-EOF
	Requires: libevent_core
	Libs: -L\${libdir} -levent_extra
	EOF
	cat >> "$prefix/lib/pkgconfig/libevent_openssl.pc" <<-EOF
	Requires: libevent_core
	Requires.private: libssl libcrypto
	Libs: -L\${libdir} -levent_openssl
	EOF
}

# Prints the upstream version from event-config.h, such as 2.1.12.
libevent_pc_version() {
	sed -n 's/^#define EVENT__VERSION "\([0-9.]*\).*"/\1/p' \
	    "$1/include/event2/event-config.h"
}

# Builds the amalgamation sqlite3.c with the build machine's compiler and
# Tcl, because Debian's source package contains only the split source tree,
# then cross-compiles that one file.
build_sqlite() {
	local src=$1 prefix=$2 version=$3
	local work="$src/build-amalgamation"

	mkdir -p "$work" "$prefix/lib/pkgconfig" "$prefix/include"
	(cd "$work" &&
	    nice -n 19 "$src/configure" --disable-tcl > configure.log &&
	    nice -n 19 make -j "$jobs" sqlite3.c sqlite3.h)

	# The options are a subset of Debian's libsqlite3 build. Extension
	# loading is left out because relayq never loads extensions.
	nice -n 19 "$triple-gcc" -O2 -c -o "$work/sqlite3.o" "$work/sqlite3.c" \
	    -DSQLITE_THREADSAFE=1 -DSQLITE_SECURE_DELETE -DSQLITE_USE_URI=1 \
	    -DSQLITE_OMIT_LOAD_EXTENSION
	rm -f "$prefix/lib/libsqlite3.a"
	"$triple-ar" rcs "$prefix/lib/libsqlite3.a" "$work/sqlite3.o"
	cp "$work/sqlite3.h" "$work/sqlite3ext.h" "$prefix/include/"

	cat > "$prefix/lib/pkgconfig/sqlite3.pc" <<-EOF
	prefix=$prefix
	libdir=\${prefix}/lib
	includedir=\${prefix}/include

	Name: SQLite
	Description: SQL database engine
	Version: $(upstream_version "$version")
	Cflags: -I\${includedir}
	Libs: -L\${libdir} -lsqlite3
	EOF
}

# Prints the upstream part of Debian version $1: 3.40.1-2+deb12u2 gives 3.40.1.
upstream_version() {
	local version=${1#*:}

	echo "${version%-*}"
}

toolchain_version() {
	"$triple-gcc" -dumpversion
}

# Sets dep_prefix to the cache directory of source package $1, whose version
# follows Debian package $2 on this machine, and builds it there unless the
# cache already contains it. $3 is the build function; extra arguments go
# to it. dependency_key_suffix is appended to the cache directory name.
#
# The version that was built for an installed version is remembered in
# CACHE/resolved/, so that a cached run needs no network. After a fallback
# to an older version, only --refresh looks for the installed one again.
dep_prefix=
dependency_key_suffix=
build_dependency() {
	local source=$1 dev_package=$2 builder=$3
	shift 3
	local wanted version candidate key alias work start

	wanted=$(installed_source_version "$dev_package")
	alias="$cache_dir/resolved/$source-${wanted:-newest}"
	version=$wanted
	if [ -s "$alias" ]; then
		version=$(cat "$alias")
	fi

	key="$source-${version//:/_}-gcc$(toolchain_version)-r${recipe_revisions[$source]}"
	dep_prefix="$cache_dir/$triple/$key$dependency_key_suffix"
	if [ -n "$version" ] && [ -e "$dep_prefix/.complete" ]; then
		log "$source $version: cached in $dep_prefix"
		return 0
	fi

	apt_prepare
	work="$cache_dir/work/$source"
	mkdir -p "$cache_dir/work"
	version=
	for candidate in $(archive_source_versions "$source" "$wanted"); do
		if fetch_source "$source" "$candidate" "$work"; then
			version=$candidate
			break
		fi
		log "$source $candidate: download failed; trying an older version"
	done
	[ -n "$version" ] || die "no source version of $source up to ${wanted:-any} could be downloaded"
	if [ "$version" != "$wanted" ]; then
		log "$source ${wanted:-(not installed)}: source not available; using $version instead"
	fi
	mkdir -p "$cache_dir/resolved"
	echo "$version" > "$alias"

	key="$source-${version//:/_}-gcc$(toolchain_version)-r${recipe_revisions[$source]}"
	dep_prefix="$cache_dir/$triple/$key$dependency_key_suffix"
	if [ -e "$dep_prefix/.complete" ]; then
		log "$source $version: cached in $dep_prefix"
		rm -rf "$work"
		return 0
	fi

	rm -rf "$dep_prefix"
	start=$SECONDS
	log "$source $version: building into $dep_prefix"
	"$builder" "$work" "$dep_prefix" "$version" "$@" > "$cache_dir/work/$source.log" 2>&1 ||
	    { tail -n 40 "$cache_dir/work/$source.log" >&2; die "$source $version: build failed; full log: $cache_dir/work/$source.log"; }
	touch "$dep_prefix/.complete"
	log "$source $version: built in $((SECONDS - start)) s"
	rm -rf "$work"
}

pkgconfig_dirs=()

build_dependencies() {
	local openssl_prefix openssl_version

	dependency_key_suffix=
	build_dependency openssl libssl-dev build_openssl
	openssl_prefix=$dep_prefix
	pkgconfig_dirs+=("$openssl_prefix/lib/pkgconfig")

	build_dependency libyaml libyaml-dev build_libyaml
	pkgconfig_dirs+=("$dep_prefix/lib/pkgconfig")

	build_dependency sqlite3 libsqlite3-dev build_sqlite
	pkgconfig_dirs+=("$dep_prefix/lib/pkgconfig")

	# libevent_openssl is compiled against OpenSSL's headers, so its cache
	# key names the OpenSSL build.
	openssl_version=$(basename "$openssl_prefix")
	dependency_key_suffix="+${openssl_version%%-gcc*}"
	build_dependency libevent libevent-dev build_libevent "$openssl_prefix"
	pkgconfig_dirs+=("$dep_prefix/lib/pkgconfig")
}

# Writes the machine file that points Meson's pkg-config at the
# dependencies, and prints its path.
write_deps_machine_file() {
	local file="$cache_dir/$triple/deps.ini" dir list=

	for dir in "${pkgconfig_dirs[@]}"; do
		list+="${list:+, }'$dir'"
	done
	cat > "$file.tmp" <<-EOF
	# Written by packaging/windows/build.sh; rewritten on every run.
	[properties]
	pkg_config_libdir = [$list]
	EOF
	if cmp -s "$file.tmp" "$file"; then
		rm "$file.tmp"
	else
		mv "$file.tmp" "$file"
	fi
	echo "$file"
}

# Configures the Meson project in $1 into build directory $2 for Windows.
meson_configure() {
	local source_dir=$1 dir=$2 deps_file=$3 setup_args=()

	setup_args=(
		--cross-file "$script_dir/cross-$triple.txt"
		--cross-file "$deps_file"
		-Ddefault_library=static
		-Dprefer_static=true
	)
	# Meson copies the machine files at setup, so new dependency versions
	# need a fresh configuration.
	if [ -e "$dir/build.ninja" ] && cmp -s "$deps_file" "$dir/relayq-deps.ini"; then
		return 0
	fi

	if [ -e "$dir/meson-private/coredata.dat" ]; then
		setup_args+=(--wipe)
	elif [ -e "$dir/meson-private" ]; then
		# A setup that failed leaves a directory that "meson setup --wipe"
		# rejects as not a build tree.
		rm -rf "$dir"
	fi
	nice -n 19 meson setup "${setup_args[@]}" "$dir" "$source_dir"
	cp "$deps_file" "$dir/relayq-deps.ini"
}

# Runs test programs through the cross file's exe_wrapper in a Wine prefix
# kept in the cache, or in $WINEPREFIX when that is set, without Wine's Mono
# and Gecko installer prompts. The MSI test installs relayq into the prefix,
# so concurrent runs need separate prefixes.
setup_wine() {
	export WINEPREFIX="${WINEPREFIX:-$cache_dir/wineprefix}"
	export WINEDEBUG=-all
	export WINEDLLOVERRIDES='mscoree,mshtml='
}

# Links all four dependencies into one program and runs it under Wine.
check_dependencies() {
	local deps_file=$1 dir="$cache_dir/$triple/depcheck"

	log "checking the dependency libraries with depcheck.exe"
	meson_configure "$script_dir/depcheck" "$dir" "$deps_file" > "$dir.log" 2>&1 ||
	    { cat "$dir.log" >&2; die "depcheck: meson setup failed"; }
	nice -n 19 ninja -C "$dir" -j "$jobs" >> "$dir.log" 2>&1 ||
	    { cat "$dir.log" >&2; die "depcheck: build failed"; }
	if [ "$run_tests" -eq 1 ]; then
		nice -n 19 meson test -C "$dir" --print-errorlogs >> "$dir.log" 2>&1 ||
		    { cat "$dir.log" >&2; die "depcheck: test under Wine failed"; }
	fi
}

# Builds with -k 0 so that one run lists every file that fails to compile.
build_relayq() {
	local start=$SECONDS

	log "building relayq in $build_dir"
	if ! nice -n 19 ninja -C "$build_dir" -j "$jobs" -k 0 2>&1 | tee "$build_dir/build.log"; then
		die "relayq build failed after $((SECONDS - start)) s; log: $build_dir/build.log"
	fi
	log "relayq built in $((SECONDS - start)) s"
}

# Builds BUILD_DIR/relayq-VERSION-x64.msi from relayq.wxs, the two
# programs and the example configuration, and links BUILD_DIR/relayq.msi
# to it.
build_msi() {
	local version stage=msi-stage msi

	version=$(meson introspect --projectinfo "$build_dir" |
	    sed -n 's/.*"version": "\([^"]*\)".*/\1/p')
	[ -n "$version" ] || die "cannot read the project version from $build_dir"
	msi="relayq-$version-x64.msi"

	# wixl 0.101 does not find files given by an absolute path, so it
	# runs in the build directory with a relative BinDir.
	rm -rf "${build_dir:?}/$stage"
	mkdir "$build_dir/$stage"
	cp "$build_dir/daemon/relayqd.exe" "$build_dir/cli/relayq.exe" \
	    "$script_dir/relayq.yaml" "$build_dir/$stage/"
	(cd "$build_dir" &&
	    wixl -a x64 -D Version="$version" -D BinDir="$stage" -o "$msi.tmp" \
	        "$script_dir/relayq.wxs") ||
	    die "wixl failed to build the MSI"

	# wixl 0.101 supports neither NeverOverwrite nor Permanent. Attributes
	# 400 = 256 (64-bit) + 128 (not installed when relayq.yaml exists) +
	# 16 (left in place by uninstall). See relayq.wxs.
	msibuild "$build_dir/$msi.tmp" -q "UPDATE \`Component\` SET \`Attributes\` = 400 WHERE \`Component\` = 'config'" ||
	    die "msibuild failed to set the attributes of the config component"
	msiinfo export "$build_dir/$msi.tmp" Component | grep -q "^config	.*	400	" ||
	    die "the config component of $msi lacks attributes 400"

	mv "$build_dir/$msi.tmp" "$build_dir/$msi"
	ln -sf "$msi" "$build_dir/relayq.msi"
	log "built $build_dir/$msi"
}

test_relayq() {
	log "running the unit tests under Wine ($WINEPREFIX)"
	nice -n 19 meson test -C "$build_dir" --suite unit --print-errorlogs
}

# relayqd.exe relays mail from swaks to the fake smart host, and relayq.exe
# reads the queue, all under Wine. The Linux build is not needed.
test_relayq_wine() {
	local start=$SECONDS

	log "running tests/integration/test_windows_*.py under Wine"
	(cd "$repo_dir" && RELAYQ_WIN_BUILD="$build_dir" nice -n 19 \
	    /usr/bin/python3 -m pytest -q -p no:cacheprovider \
	    tests/integration/test_windows_*.py) ||
	    die "the Wine integration test failed"
	log "Wine integration test passed in $((SECONDS - start)) s"
}

main() {
	local start=$SECONDS deps_file

	parse_args "$@"
	lower_priority
	trap cleanup EXIT
	install_tools
	setup_wine
	mkdir -p "$cache_dir/$triple"
	if [ "$refresh" -eq 1 ]; then
		rm -rf "$cache_dir/resolved"
	fi

	build_dependencies
	deps_file=$(write_deps_machine_file)
	check_dependencies "$deps_file"
	log "dependencies ready in $((SECONDS - start)) s; Meson machine file: $deps_file"
	if [ "$deps_only" -eq 1 ]; then
		return 0
	fi

	meson_configure "$repo_dir" "$build_dir" "$deps_file"
	build_relayq
	build_msi
	if [ "$run_tests" -eq 1 ]; then
		test_relayq
	fi
	if [ "$run_tests" -eq 1 ] && [ "$run_integration" -eq 1 ]; then
		test_relayq_wine
	fi
}

main "$@"
