#!/bin/sh
# The containers' entrypoint: serves the anyprec image at $ANYPREC_IMAGE. When there is none
# yet, it first quantizes the Hugging Face model at $ANYPREC_HF_MODEL into it (once: the image
# is written beside and renamed into place, so an interrupted start leaves no half image).
# Calibration text for the sensitivity weights is read from $ANYPREC_CALIB when that file is
# not empty; $ANYPREC_MODEL_NAME names the models; $ANYPREC_QUANTIZE_ARGS adds options.
# Arguments are passed on to anyprec-server.
set -eu
image=${ANYPREC_IMAGE:-/models/image}
hf_model=${ANYPREC_HF_MODEL:-/models/hf}
calib=${ANYPREC_CALIB:-/models/calibration.txt}

quantize() {
  if [ -s "$calib" ]; then
    sensitivity="--calib $calib"
  else
    echo "anyprec: no calibration text at $calib: quantizing without sensitivity weights, which costs quality at 3 and 4 bits" >&2
    sensitivity="--sensitivity none"
  fi
  echo "anyprec: no image at $image; quantizing $hf_model into it" >&2
  partial="$image.partial"
  rm -rf "$partial"
  # In the background, so that a stop reaches it: as a container's PID 1 this shell would
  # otherwise ignore SIGTERM until the quantizer finished.
  # The models are called after the folder unless named: here the folder is only a mount point.
  name=${ANYPREC_MODEL_NAME:+--model-name $ANYPREC_MODEL_NAME}
  # shellcheck disable=SC2086 # the option strings are meant to split into words
  anyprec-quantize --model "$hf_model" --out "$partial" $sensitivity $name ${ANYPREC_QUANTIZE_ARGS:-} &
  quantizer=$!
  trap 'kill -TERM "$quantizer" 2> /dev/null' TERM INT
  wait "$quantizer" || { status=$?; wait "$quantizer" 2> /dev/null; exit "$status"; }
  trap - TERM INT
  if [ -d "$image" ]; then
    rmdir "$image" 2> /dev/null || { echo "anyprec: $image exists and is not an empty folder" >&2; exit 2; }
  fi
  mv "$partial" "$image"
}

if [ ! -f "$image/anyprec.safetensors" ]; then
  if [ ! -f "$hf_model/config.json" ]; then
    echo "anyprec: no image at $image and no Hugging Face model at $hf_model; mount one of them" >&2
    exit 2
  fi
  quantize
fi

set -- --model "$image" --listen "${ANYPREC_LISTEN:-0.0.0.0:50051}" --metrics-listen "${ANYPREC_METRICS_LISTEN:-0.0.0.0:9464}" \
  --http-listen "${ANYPREC_HTTP_LISTEN:-0.0.0.0:8000}" "$@"
# Without a tenants file the server serves anonymous requests on loopback only, which a
# container's published port cannot reach.
tenants=${ANYPREC_TENANTS:-/etc/anyprec/tenants.toml}
api_keys=${ANYPREC_API_KEYS:-/etc/anyprec/keys}
if [ -f "$tenants" ]; then
  set -- --tenants "$tenants" "$@"
  # Plain-text keys, one file per tenant (e.g. a mounted Secret), beside the file's hashed ones.
  if [ -d "$api_keys" ]; then
    set -- --api-keys "$api_keys" "$@"
  fi
fi
exec anyprec-server "$@"
