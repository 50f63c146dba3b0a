"""NAO itself: the space protocol, the controller, generation, metrics and the search loop."""
