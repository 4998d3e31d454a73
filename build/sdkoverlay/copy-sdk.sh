#!/usr/bin/env bash
# Writes <out>/databricks-sdk-go (the Databricks SDK from the module cache, go.mod's version, with
# the files of build/sdkoverlay/_stubs over the originals of the same path) and <out>/go.mod (the
# repository's go.mod plus a replace directive to that copy), for `go build -modfile=<out>/go.mod`.
# Run by the Makefile's rule for <out>/go.mod. SAM builds the functions in parallel in the source
# tree (samconfig.toml: build_in_source, parallel), so several copies of this may start at once:
# a lock directory makes them take turns, and whoever comes second finds the copy up to date.
# Usage: copy-sdk.sh GO OUT_DIR (run from the repository root)
set -euo pipefail
go=$1 out=$2
module=github.com/databricks/databricks-sdk-go
stubs=build/sdkoverlay/_stubs

lock=$out.lock
mkdir -p "$(dirname "$out")"
for ((i = 0; ; i++)); do
	mkdir "$lock" 2>/dev/null && break
	if ((i >= 600)); then
		echo "copy-sdk.sh: $lock held for 2 minutes; remove it if no build is running" >&2
		exit 1
	fi
	sleep 0.2
done
trap 'rmdir "$lock"' EXIT

if [ -f "$out/go.mod" ] && [ -z "$(find go.mod go.sum "$stubs" "$0" -newer "$out/go.mod" | head -1)" ]; then
	exit 0 # another build wrote it while this one waited
fi

src=$("$go" list -m -f '{{.Dir}}' "$module")
if [ -z "$src" ] || [ ! -d "$src" ]; then
	"$go" mod download "$module"
	src=$("$go" list -m -f '{{.Dir}}' "$module")
fi
if [ -z "$src" ] || [ ! -d "$src" ]; then
	echo "copy-sdk.sh: $module is not in the module cache" >&2
	exit 1
fi

# The module cache is read-only: make the old and the new copy writable before removing or patching.
chmod -R u+w "$out" 2>/dev/null || true
rm -rf "$out"
mkdir -p "$out"
cp -R "$src" "$out/databricks-sdk-go"
chmod -R u+w "$out/databricks-sdk-go"
while IFS= read -r stub; do
	rel=${stub#"$stubs"/}
	if [ ! -f "$out/databricks-sdk-go/$rel" ]; then
		echo "copy-sdk.sh: $module has no $rel: update build/sdkoverlay" >&2
		exit 1
	fi
	cp "$stub" "$out/databricks-sdk-go/$rel"
done < <(find "$stubs" -name '*.go' | sort)

cp go.sum "$out/go.sum"
# The replace path is relative to the repository root, so the binaries' build info names no
# machine's directory.
rel_out=${out#"$PWD"/}
{
	cat go.mod
	printf '\n// Written by build/sdkoverlay/copy-sdk.sh: the shipped build, against the SDK copy beside this file.\n'
	printf 'replace %s => ./%s/databricks-sdk-go\n' "$module" "$rel_out"
} >"$out/go.mod.tmp"
mv "$out/go.mod.tmp" "$out/go.mod"
