"""Caracal control plane: the shared core used by the api, dispatcher and reaper."""
