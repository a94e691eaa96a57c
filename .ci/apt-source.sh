# Sourced by the .ci/install-* scripts: read this machine's own Debian apt source.
#
# read_apt_source SUITE [SKIP_FILE] prints "URI<TAB>KEYRING" of the first source whose
# suites include SUITE: deb822 *.sources first, then one-line *.list entries. KEYRING is
# empty when the source names none. SKIP_FILE (a source the caller wrote itself) is ignored.
# The mirror address thus comes from the machine, never from the repository.

read_apt_source() {
    local suite="$1" skip="${2:-}" src
    src="$(_read_deb822_sources "$suite" "$skip")"
    [ -n "$src" ] || src="$(_read_one_line_sources "$suite")"
    printf '%s' "$src"
}

_read_deb822_sources() {
    local suite="$1" skip="$2" f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -e "$f" ] || continue
        [ "$f" = "$skip" ] && continue
        awk -v want="$suite" '
            function flush() {
                if (suite_ok && uri != "") { print uri "\t" key; found = 1; exit }
                uri = ""; key = ""; suite_ok = 0
            }
            /^[[:space:]]*$/ { flush(); next }
            /^[[:space:]]*#/ { next }
            tolower($1) == "uris:" { uri = $2 }
            tolower($1) == "signed-by:" { key = $2 }
            tolower($1) == "suites:" {
                for (i = 2; i <= NF; i++) if ($i == want) suite_ok = 1
            }
            END { if (!found) flush() }
        ' "$f"
    done | head -n 1
}

# One-line sources ("deb [signed-by=K] URI SUITE main"): same output.
_read_one_line_sources() {
    local suite="$1" f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -e "$f" ] || continue
        awk -v want="$suite" '
            $1 != "deb" { next }
            {
                key = ""; i = 2
                if ($2 ~ /^\[/) {
                    for (; i <= NF; i++) {
                        if (match($i, /signed-by=[^] ]+/)) key = substr($i, RSTART + 10, RLENGTH - 10)
                        if ($i ~ /\]$/) { i++; break }
                    }
                }
                if ($(i + 1) == want) { print $i "\t" key; exit }
            }
        ' "$f"
    done | head -n 1
}
