"""What a committed test's reset empties, in SQL: no SQLAlchemy, so any module can use it."""

KEEP_TABLES = ("alembic_version",)
# One round trip, whatever the number of tables.
TRUNCATE_ALL = """
DO $$
DECLARE tables text;
BEGIN
  SELECT string_agg(quote_ident(schemaname) || '.' || quote_ident(tablename), ', ')
  INTO tables
  FROM pg_tables
  WHERE schemaname = current_schema() AND tablename NOT IN ({keep});
  IF tables IS NOT NULL THEN
    EXECUTE 'TRUNCATE ' || tables || ' RESTART IDENTITY CASCADE';
  END IF;
END $$
""".format(  # noqa: S608 - constant table names, no user input
    keep=", ".join(f"'{t}'" for t in KEEP_TABLES)
)
