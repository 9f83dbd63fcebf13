"""Errors a user can cause."""


class UserError(Exception):
  """An error the user caused (bad path, corrupt file): the CLI prints it as one line."""
