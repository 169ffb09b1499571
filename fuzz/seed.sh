#!/bin/sh
# Seeds fuzz/corpus/ from the test vectors in protocols/csta-xml/.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
vectors="$here/../protocols/csta-xml"
mkdir -p "$here/corpus/xml_decode" "$here/corpus/framer_xml" "$here/corpus/capture" "$here/corpus/session"
for f in "$vectors"/*.xml; do
    cp "$f" "$here/corpus/xml_decode/"
done
# framer_xml inputs: a cap selector byte, a cut count byte, cut lengths, then the stream.
for f in "$vectors"/*.bin; do
    { printf '\000\003\007\200\031'; cat "$f"; } > "$here/corpus/framer_xml/$(basename "$f")"
done
# capture inputs: a format selector byte (0 auto, 1 raw, 2 hex, 3 pcap), then the capture.
data="$here/../tests/data"
for f in "$data"/*.pcap "$data"/*.pcapng; do
    [ -e "$f" ] && { printf '\000'; cat "$f"; } > "$here/corpus/capture/$(basename "$f")"
done
for f in "$data"/*.hex "$data"/*.xxd "$data"/*.hexdump "$data"/*.od; do
    [ -e "$f" ] && { printf '\002'; cat "$f"; } > "$here/corpus/capture/$(basename "$f")"
done
for f in "$data"/*.raw; do
    [ -e "$f" ] && { printf '\001'; cat "$f"; } > "$here/corpus/capture/$(basename "$f")"
done
# session inputs: a dialect byte, then operations; one opening per dialect (answer the newest
# request with the first template, then let time pass).
for d in 0 1 2; do
    printf "\\00$d\\000\\000\\000\\000\\005\\012\\000\\006\\000\\202" > "$here/corpus/session/open-$d"
done
echo "seeded $(ls "$here/corpus/xml_decode" | wc -l) xml_decode and $(ls "$here/corpus/framer_xml" | wc -l) framer_xml and $(ls "$here/corpus/capture" | wc -l) capture inputs"
