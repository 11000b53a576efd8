-- The values of one staged column that do not cast to the column's type, with Postgres's
-- message, in one statement: what an import with thousands of bad values (an `NA` in a
-- numeric column, in most rows of a file from R) would otherwise find row by row, each
-- under a savepoint of its own. $1 is the staging table, $2 the staged column, $3 the
-- type (with its modifier, as the insert applies it).
--
-- Each cast runs in a PL/pgSQL exception block, a subtransaction that writes nothing: it
-- takes no transaction id, so no lock outlives it however many values fail.
CREATE FUNCTION offload.import_cast_failures(regclass, text, text)
RETURNS TABLE (n integer, line bigint, value text, message text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    r record;
    cast_sql text := format('SELECT CAST($1 AS %s)', $3);
BEGIN
    FOR r IN EXECUTE format(
        'SELECT n, line, %1$I AS v FROM %2$s WHERE NOT bad AND %1$I IS NOT NULL ORDER BY n',
        $2, $1)
    LOOP
        BEGIN
            EXECUTE cast_sql USING r.v;
        EXCEPTION WHEN data_exception THEN
            n := r.n;
            line := r.line;
            value := r.v;
            message := SQLERRM;
            RETURN NEXT;
        END;
    END LOOP;
END
$$;
