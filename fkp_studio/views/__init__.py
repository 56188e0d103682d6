"""The studio's views: widgets and dialogs that draw what the state and the document emit and emit
the user's intents as signals; they never run a flow."""
