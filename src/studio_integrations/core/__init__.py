"""What every layer shares and that imports nothing internal: enums, the acting context,
ids, errors, SemVer, trace ids and the clock."""
