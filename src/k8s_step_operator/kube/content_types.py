"""The content types of the API's writes (constants only: the client, and the resource-step actions table)."""

JSON = "application/json"
APPLY_PATCH = "application/apply-patch+yaml"  # server-side apply
# a patch's flavour (kubectl patch --type) -> its content type
PATCH = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
}
