#!/bin/sh
# Seeds fuzz/corpus/ from the test vectors in protocols/csta-xml/.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
vectors="$here/../protocols/csta-xml"
mkdir -p "$here/corpus/xml_decode" "$here/corpus/framer_xml"
for f in "$vectors"/*.xml; do
    cp "$f" "$here/corpus/xml_decode/"
done
# framer_xml inputs: a cap selector byte, a cut count byte, cut lengths, then the stream.
for f in "$vectors"/*.bin; do
    { printf '\000\003\007\200\031'; cat "$f"; } > "$here/corpus/framer_xml/$(basename "$f")"
done
echo "seeded $(ls "$here/corpus/xml_decode" | wc -l) xml_decode and $(ls "$here/corpus/framer_xml" | wc -l) framer_xml inputs"
