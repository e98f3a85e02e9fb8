"""Sales: leads, opportunities and pipelines, forecasts, quotes, activities and follow-ups."""
