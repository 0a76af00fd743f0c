# Shared by ci/test and ci/bench: a build directory outside the clone, the Python
# virtualenv the tests use, and a SeaweedFS S3 server on 127.0.0.1.
# shellcheck shell=bash

POPLAR_CI_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POPLAR_CACHE="${POPLAR_CACHE:-$HOME/.cache/poplar}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$POPLAR_CACHE/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
POPLAR_VENV="${POPLAR_VENV:-$POPLAR_CACHE/venv}"

POPLAR_CI_STARTED=${POPLAR_CI_STARTED:-$(date +%s)}
# Each step's line carries the minutes:seconds since the script started, so a CI log
# shows where the time went.
log() {
    local t=$(( $(date +%s) - POPLAR_CI_STARTED ))
    printf '== [%d:%02d] %s\n' $((t / 60)) $((t % 60)) "$*" >&2
}

# Stops a background process and everything it started (a build's cargo and rustc).
kill_tree() {
    local child
    for child in $(pgrep -P "$1" 2>/dev/null); do
        kill_tree "$child"
    done
    kill "$1" 2>/dev/null || true
}

# Command-line tools the tests call (curl for SeaweedFS readiness, openssl for TLS certs).
ensure_tools() {
    local missing=()
    for tool in curl openssl python3; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        apt-get update -qq && apt-get install -y -qq "${missing[@]/python3/python3-venv}" >/dev/null
    fi
}

# The formatter and linter ci/test runs (part of the toolchain, but a minimal install
# may lack them).
ensure_rust_components() {
    cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
    cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
}

# Create (or update) the virtualenv from ci/requirements.txt; re-installs only when the
# requirements change.
ensure_python_env() {
    local stamp="$POPLAR_VENV/.requirements.sha256" want
    want=$(sha256sum ci/requirements.txt | cut -d' ' -f1)
    if [ ! -x "$POPLAR_VENV/bin/python" ]; then
        log "creating Python virtualenv at $POPLAR_VENV"
        python3 -m venv "$POPLAR_VENV"
    fi
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        log "installing Python test dependencies"
        "$POPLAR_VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
        "$POPLAR_VENV/bin/pip" install --quiet --disable-pip-version-check -r ci/requirements.txt
        echo "$want" > "$stamp"
    fi
}

# A TCP port on 127.0.0.1 that is free, and whose +10000 (SeaweedFS's gRPC port) is too.
free_port() {
    "$POPLAR_VENV/bin/python" "$POPLAR_CI_DIR/python/ports.py"
}

SEAWEED_PID=""
SEAWEED_DIR=""

# Start SeaweedFS (master, volume, filer, S3) bound to 127.0.0.1 and export what the
# tests need: AWS_* for object_store and POPLAR_TEST_S3_BUCKET.
start_seaweedfs() {
    SEAWEED_DIR=$(mktemp -d)
    local master volume filer s3 ports=()
    # Four distinct ports: free_port only checks, so two calls can return the same one.
    while [ ${#ports[@]} -lt 4 ]; do
        local p
        p=$(free_port)
        [[ " ${ports[*]} " == *" $p "* ]] || ports+=("$p")
    done
    master=${ports[0]}; volume=${ports[1]}; filer=${ports[2]}; s3=${ports[3]}
    log "starting SeaweedFS S3 on 127.0.0.1:$s3"
    "$POPLAR_VENV/bin/weed" server -dir="$SEAWEED_DIR" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -master.port="$master" -volume.port="$volume" -filer.port="$filer" \
        -s3 -s3.port="$s3" -s3.port.iceberg=0 -s3.port.lance=0 \
        -master.volumeSizeLimitMB=64 >"$SEAWEED_DIR/weed.log" 2>&1 &
    SEAWEED_PID=$!
    export AWS_ENDPOINT="http://127.0.0.1:$s3" AWS_ALLOW_HTTP=true AWS_REGION=us-east-1
    export AWS_ACCESS_KEY_ID=poplar-test AWS_SECRET_ACCESS_KEY=poplar-test
    export POPLAR_TEST_S3_BUCKET=poplar-test
    local i
    for i in $(seq 1 120); do
        if ! kill -0 "$SEAWEED_PID" 2>/dev/null; then
            break
        fi
        if curl -s -o /dev/null -X PUT "$AWS_ENDPOINT/$POPLAR_TEST_S3_BUCKET" && \
           [ "$(curl -s -o /dev/null -w '%{http_code}' "$AWS_ENDPOINT/$POPLAR_TEST_S3_BUCKET")" = 200 ]; then
            return 0
        fi
        sleep 0.5
    done
    log "SeaweedFS did not start; its log:"; tail -30 "$SEAWEED_DIR/weed.log" >&2
    return 1
}

stop_seaweedfs() {
    if [ -n "$SEAWEED_PID" ]; then
        kill "$SEAWEED_PID" 2>/dev/null || true
        wait "$SEAWEED_PID" 2>/dev/null || true
    fi
    [ -n "$SEAWEED_DIR" ] && rm -rf "$SEAWEED_DIR"
    SEAWEED_PID=""
}

POPLAR_NODE_DIR="${POPLAR_NODE_DIR:-$POPLAR_CACHE/node}"

# Debian's Chromium (playwright-core never downloads a browser) and the browser tests'
# node packages, installed outside the clone from ci/browser's lock file; re-installs only
# when the lock file changes. The test finds them through POPLAR_NODE_DIR.
ensure_browser() {
    if [ ! -x /usr/bin/chromium ]; then
        log "installing chromium"
        apt-get update -qq && apt-get install -y -qq chromium >/dev/null
    fi
    # Node.js 20 comes with the machine (Debian's own nodejs is 18, too old for playwright-core).
    command -v npm >/dev/null 2>&1 || { log "node and npm are missing"; return 1; }
    local stamp="$POPLAR_NODE_DIR/.package-lock.sha256" want
    want=$(sha256sum ci/browser/package-lock.json | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        log "installing the browser tests' node packages into $POPLAR_NODE_DIR"
        mkdir -p "$POPLAR_NODE_DIR"
        cp ci/browser/package.json ci/browser/package-lock.json "$POPLAR_NODE_DIR/"
        (cd "$POPLAR_NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
        echo "$want" > "$stamp"
    fi
    export POPLAR_NODE_DIR
}
