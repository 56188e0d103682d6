"""Background jobs (no Qt): the job runner and the model jobs of the hard-example loop."""
