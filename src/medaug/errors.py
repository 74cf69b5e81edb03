"""One exception type for every error a user can fix; its message is one line naming the file/line or key."""


class MedaugError(Exception):
    """A user-fixable error. The CLI prints `error: <message>` and exits 2."""


def guarded(fn, *args, **kwargs):
    """Run a stage entry point; a MedaugError becomes one line on stderr and exit status 2."""
    import sys

    try:
        return fn(*args, **kwargs)
    except MedaugError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
