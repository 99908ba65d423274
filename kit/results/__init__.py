"""From a run's events to the tables, the cost, the figures, the reading and the report; the sweep."""
