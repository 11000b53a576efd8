-- A column whose type is a domain fails its cast with the domain's constraint
-- (check_violation, not_null_violation: class 23) or with an error its CHECK raises itself
-- (raise_exception), not only with a data_exception. Those are the value's fault as well:
-- report them as rejects instead of letting them abort the item on every delivery.
CREATE OR REPLACE FUNCTION offload.import_cast_failures(regclass, text, text)
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
        EXCEPTION WHEN data_exception OR integrity_constraint_violation OR raise_exception THEN
            n := r.n;
            line := r.line;
            value := r.v;
            message := SQLERRM;
            RETURN NEXT;
        END;
    END LOOP;
END
$$;
