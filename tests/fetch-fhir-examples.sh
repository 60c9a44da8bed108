#!/bin/sh
# Fetches the CC0 FHIR R4 example package (hl7.fhir.r4.examples 4.0.1, ~19 MB) with npm and
# unpacks it under target/fhir-examples, for the accuracy suite's full-package run
# (`.ci/setup test` calls it when the package is missing; tests/accuracy.rs finds it there):
#
#   tests/fetch-fhir-examples.sh
#   cargo test --test accuracy fhir_r4_package -- --nocapture
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
echo "run: cargo test --test accuracy fhir_r4_package -- --nocapture"
