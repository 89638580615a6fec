"""widgets: thin ipywidgets views over the core models and the viz drawings."""
