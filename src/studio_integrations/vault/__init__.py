"""The one place that talks to secret stores. Secret values never leave this package except
to the code that uses them on an outbound call."""
