"""Helpers the tests share (not tests): paths, process runner, project copies, test servers."""
