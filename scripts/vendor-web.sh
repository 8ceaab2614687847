#!/usr/bin/env bash
# Write the page's third-party browser modules, with their licence texts, into a folder.
#
# The sources are the packages `npm ci` installed from package-lock.json (node_modules/). The
# output is committed under src/typewriter/web/vendor/, so that a clone, a wheel or an sdist
# serves the full page without Node; `make vendor` reruns this to refresh it after the lock
# changes, and tests/packaging/test_vendor.py runs it into a temp folder to check that the
# committed files are exactly what the lock gives.
#
# The ES module builds are copied without their source-map comments (the maps are not shipped).
#
# Usage: scripts/vendor-web.sh DEST   (from the repository root, after `npm ci`)
set -euo pipefail

dest=${1:?usage: scripts/vendor-web.sh DEST}
modules=node_modules
for package in marked dompurify @highlightjs/cdn-assets katex; do
    [[ -d $modules/$package ]] || { echo "vendor-web: $modules/$package is missing: run npm ci" >&2; exit 1; }
done

rm -rf "$dest"
mkdir -p "$dest"
sed '/^\/\/# sourceMappingURL=/d' "$modules/marked/lib/marked.esm.js" > "$dest/marked.js"
sed '/^\/\/# sourceMappingURL=/d' "$modules/dompurify/dist/purify.es.mjs" > "$dest/dompurify.js"
# highlight.js: the "common languages" ES build, one module with no imports; KaTeX: its ES
# module build (the page asks it for MathML only, so none of its CSS or fonts is needed).
sed '/^\/\/# sourceMappingURL=/d' "$modules/@highlightjs/cdn-assets/es/highlight.min.js" > "$dest/highlight.js"
sed '/^\/\/# sourceMappingURL=/d' "$modules/katex/dist/katex.mjs" > "$dest/katex.js"
cp "$modules/marked/LICENSE" "$dest/marked-LICENSE.txt"
cp "$modules/dompurify/LICENSE" "$dest/dompurify-LICENSE.txt"
cp "$modules/@highlightjs/cdn-assets/LICENSE" "$dest/highlight-LICENSE.txt"
cp "$modules/katex/LICENSE" "$dest/katex-LICENSE.txt"
