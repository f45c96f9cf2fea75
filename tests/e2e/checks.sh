# checks.sh -- what the shell end-to-end tests share (sourced by tests/e2e/*_test.sh and
# tests/kube/live_test.sh): named checks with a pass/fail tally, assertions, a free port.
#
#   check NAME        starts a check (and finishes the previous one)
#   fail MSG          marks the current check failed, printing MSG
#   expect_eq WHAT EXPECTED ACTUAL, expect_contains WHAT NEEDLE HAYSTACK,
#   expect_true WHAT COMMAND...
#   finish_check      ends the last check; PASSED, FAILED and FAILED_NAMES hold the tally

PASSED=0
FAILED=0
FAILED_NAMES=()
CURRENT=""
CURRENT_OK=1

finish_check()
{
    [ -n "$CURRENT" ] || return 0
    if [ "$CURRENT_OK" = 1 ]; then
        PASSED=$((PASSED + 1))
        echo "ok   $CURRENT"
    else
        FAILED=$((FAILED + 1))
        FAILED_NAMES+=("$CURRENT")
        echo "FAIL $CURRENT"
    fi
    CURRENT=""
}

check()
{
    finish_check
    CURRENT=$1
    CURRENT_OK=1
}

fail()
{
    CURRENT_OK=0
    echo "     - $*"
}

expect_eq()
{
    [ "$2" == "$3" ] && return 0
    fail "$1: expected [$(printf %s "$2" | head -c 600)], got [$(printf %s "$3" | head -c 600)]"
    return 1
}

expect_contains()
{
    case "$3" in
    *"$2"*) return 0 ;;
    esac
    fail "$1: expected to contain [$2], got [$(printf %s "$3" | head -c 600)]"
    return 1
}

# The condition is a command (usually `[ ... ]`).
expect_true()
{
    local what=$1
    shift
    "$@" && return 0
    fail "$what: not true: $*"
    return 1
}

free_port()
{
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
