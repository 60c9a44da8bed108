#!/bin/sh
# Fetches the CC0 FHIR R4 example package (hl7.fhir.r4.examples 4.0.1, ~19 MB) with npm and
# unpacks it under target/fhir-examples, for the full negative run of the accuracy suite:
#
#   tests/fetch-fhir-examples.sh
#   PHI_GATEWAY_FHIR_EXAMPLES=target/fhir-examples/package cargo test --release --test accuracy -- --nocapture
set -eu
cd "$(dirname "$0")/.."
command -v npm >/dev/null 2>&1 || { echo "npm is required (apt-get install npm)" >&2; exit 1; }
mkdir -p target/fhir-examples
cd target/fhir-examples
if [ ! -d package ]; then
  echo "fetching hl7.fhir.r4.examples@4.0.1 from the npm registry..."
  npm pack --silent hl7.fhir.r4.examples@4.0.1 >/dev/null
  tar xzf hl7.fhir.r4.examples-4.0.1.tgz
fi
echo "$(ls package | wc -l) files in $(pwd)/package"
echo "run: PHI_GATEWAY_FHIR_EXAMPLES=$(pwd)/package cargo test --release --test accuracy -- --nocapture"
