"""The studio's controllers: the flows (editing, review, saving, predict, hard set, retrain) over a
`StudioState`; they never hold the window."""
