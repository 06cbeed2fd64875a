"""Adapters that speak annotation tools' own SAM protocols over the one ``InferenceService``.

Each adapter is a router under its own path prefix (``/label-studio``, ``/x-anylabeling``,
``/roboflow``) that translates the tool's requests into the service's calls and its results
back into the tool's wire format, errors included. No adapter owns a model or a cache: every
click goes through the same scheduler, embedding cache and limits as the native routes.
"""
