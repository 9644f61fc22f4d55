#!/usr/bin/env bash
# Split wheels into pieces of at most 15 MiB with a sha256 manifest, and join them back (verified), so built
# kernel wheels fit through transfers that cap a file's size. Used by scripts/gpu_check.sh.
#
#   scripts/wheel_pieces.sh split PIECES_DIR WHEEL...   # PIECES_DIR/<wheel>.part-NN + pieces.sha256 + wheels.sha256
#   scripts/wheel_pieces.sh join PIECES_DIR DEST_DIR    # verify every piece, rebuild each wheel in DEST_DIR, verify it
set -euo pipefail

PIECE_SIZE="${PIECE_SIZE:-15M}"

die() { echo "wheel_pieces: error: $*" >&2; exit 1; }

usage() {
    sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
}

split_wheels() {  # $1: pieces dir, then the wheel files
    local dir="$1" wheel name
    shift
    [[ $# -gt 0 ]] || die "split: name at least one wheel"
    mkdir -p "$dir"
    rm -f "$dir/wheels.sha256.new"
    for wheel in "$@"; do
        [[ -f "$wheel" ]] || die "split: no such file: $wheel"
        name=$(basename "$wheel")
        rm -f "$dir/$name".part-*
        split -b "$PIECE_SIZE" -d -a 2 "$wheel" "$dir/$name.part-"
        (cd "$(dirname "$wheel")" && sha256sum "$name") >>"$dir/wheels.sha256.new"
    done
    (cd "$dir" && sha256sum -- *.part-*) >"$dir/pieces.sha256"
    mv "$dir/wheels.sha256.new" "$dir/wheels.sha256"
    echo "wheel_pieces: $# wheel(s) -> $(find "$dir" -name '*.part-*' | wc -l) piece(s) in $dir"
}

join_wheels() {  # $1: pieces dir, $2: destination dir
    local dir="$1" dest="$2" name
    [[ -f "$dir/pieces.sha256" && -f "$dir/wheels.sha256" ]] || die "join: $dir has no pieces.sha256 / wheels.sha256"
    dir=$(cd "$dir" && pwd)
    (cd "$dir" && sha256sum --quiet -c pieces.sha256) || die "join: a piece in $dir is missing or corrupt"
    mkdir -p "$dest"
    dest=$(cd "$dest" && pwd)
    while read -r _ name; do
        [[ "$name" =~ ^[A-Za-z0-9._+-]+\.whl$ ]] || die "join: bad wheel name '$name' in $dir/wheels.sha256"
        # split -d numbers the pieces 00, 01, ...: the glob sorts them back in order.
        cat "$dir/$name".part-* >"$dest/$name"
    done <"$dir/wheels.sha256"
    (cd "$dest" && sha256sum --quiet -c "$dir/wheels.sha256") || die "join: a rebuilt wheel does not match its sha256"
    echo "wheel_pieces: $(wc -l <"$dir/wheels.sha256") wheel(s) rebuilt in $dest"
}

case "${1:-}" in
    split) [[ $# -ge 3 ]] || die "usage: split PIECES_DIR WHEEL..."; shift; split_wheels "$@" ;;
    join) [[ $# -eq 3 ]] || die "usage: join PIECES_DIR DEST_DIR"; join_wheels "$2" "$3" ;;
    -h | --help) usage ;;
    *) die "unknown command '${1:-}' (valid: split, join, --help)" ;;
esac
