"""The one exception type for problems a user can fix (bad path, bad file, bad option).

Front ends print its message as one line; anything else is a bug and keeps its traceback.
"""


class FerlabError(Exception):
    """A user-facing error whose message says what went wrong and what to do."""
