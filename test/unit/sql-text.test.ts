import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {characterOffset, positionToLineColumn, quoteLiteral, splitStatements} from '../../src/lib/sql-text.js'

const texts = (source: string) => splitStatements(source).map((s) => s.sql)

/** Every statement's offset must point at its own text in the source. */
function assertOffsetsPointAtStatements(source: string): void {
  for (const statement of splitStatements(source)) {
    assert.equal(source.slice(statement.offset, statement.offset + statement.sql.length), statement.sql)
  }
}

describe('splitStatements', () => {
  it('splits on top-level semicolons, keeping each semicolon with its statement', () => {
    assert.deepEqual(texts('create table a (id int);\ncreate table b (id int);\n'), ['create table a (id int);', 'create table b (id int);'])
  })

  it('keeps a trailing statement without a semicolon', () => {
    assert.deepEqual(texts('select 1;\nselect 2'), ['select 1;', 'select 2'])
  })

  it('returns nothing for whitespace and comments only', () => {
    assert.deepEqual(splitStatements('  \n-- nothing\n/* at all */\n'), [])
    assert.deepEqual(splitStatements(''), [])
  })

  it('does not split on a semicolon inside a single-quoted string, with doubled quotes', () => {
    assert.deepEqual(texts("insert into t values ('a;b', 'it''s; fine');\nselect 2;"), [
      "insert into t values ('a;b', 'it''s; fine');",
      'select 2;',
    ])
  })

  it("treats a backslash in a standard string as a literal character", () => {
    // standard_conforming_strings: 'C:\' is a complete string.
    assert.deepEqual(texts("select 'C:\\'; select 2;"), ["select 'C:\\';", 'select 2;'])
  })

  it("honours backslash escapes in E'' strings", () => {
    assert.deepEqual(texts("select E'it\\'s; still a string'; select 2;"), ["select E'it\\'s; still a string';", 'select 2;'])
    assert.deepEqual(texts("select e'\\\\'; select 3;"), ["select e'\\\\';", 'select 3;'])
  })

  it("does not take a word ending in e before a quote as an E'' string", () => {
    // `type'…'` is a typed literal, not E-string syntax, so the backslash is literal.
    assert.deepEqual(texts("select type'x\\'; select 2;"), ["select type'x\\';", 'select 2;'])
  })

  it('does not split on a semicolon inside a double-quoted identifier', () => {
    assert.deepEqual(texts('create table "odd;name" ("a""b;c" int);\nselect 1;'), ['create table "odd;name" ("a""b;c" int);', 'select 1;'])
  })

  it('keeps a $$-quoted function body with semicolons in one statement', () => {
    const fn = 'create function f() returns int language plpgsql as $$\nbegin\n  perform 1;\n  return 2;\nend;\n$$;'
    assert.deepEqual(texts(`${fn}\nselect f();`), [fn, 'select f();'])
  })

  it('keeps a $tag$-quoted body holding $$ and semicolons in one statement', () => {
    const block = "do $body$\nbegin\n  execute $$select 1; select 2$$;\n  raise notice 'x;y';\nend\n$body$;"
    assert.deepEqual(texts(`${block}\nselect 3;`), [block, 'select 3;'])
  })

  it('does not take a positional parameter $1 as a dollar quote', () => {
    assert.deepEqual(texts('prepare p as select $1; select 2;'), ['prepare p as select $1;', 'select 2;'])
  })

  it('does not split on a semicolon in a line comment', () => {
    assert.deepEqual(texts('select 1 -- not here; really\n;\nselect 2;'), ['select 1 -- not here; really\n;', 'select 2;'])
  })

  it('does not split on a semicolon in a nested block comment', () => {
    const source = 'select /* outer; /* inner; */ still comment; */ 1;\nselect 2;'
    assert.deepEqual(texts(source), ['select /* outer; /* inner; */ still comment; */ 1;', 'select 2;'])
  })

  it("keeps a rule's parenthesised action list in one statement, as psql does", () => {
    const rule = 'create rule r as on insert to a do also (insert into b values (new.id); insert into b values (new.id + 1));'
    assert.deepEqual(texts(`${rule}\nselect 1;`), [rule, 'select 1;'])
  })

  it('keeps a BEGIN ATOMIC body in one statement, CASE … END inside it included', () => {
    const fn = 'create function f(x int) returns int language sql\nbegin atomic\n  select 1;\n  select case when x > 0 then 2 else 3 end;\nend;'
    const procedure = 'CREATE OR REPLACE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC INSERT INTO t VALUES (1); END;'
    assert.deepEqual(texts(`${fn}\n${procedure}\nselect 4;`), [fn, procedure, 'select 4;'])
  })

  it('splits BEGIN and COMMIT around other statements as statements of their own', () => {
    assert.deepEqual(texts('begin;\nselect case when true then 1 end;\ncommit;'), ['begin;', 'select case when true then 1 end;', 'commit;'])
  })

  it('drops a comment-only tail after the last statement', () => {
    assert.deepEqual(texts('select 1;\n-- the end\n/* really */\n'), ['select 1;'])
  })

  it('gives each statement the offset of its first character', () => {
    const source = 'select 1;\n\n  select 2;\nselect 3'
    const statements = splitStatements(source)
    assert.deepEqual(
      statements.map((s) => s.offset),
      [0, source.indexOf('select 2'), source.indexOf('select 3')],
    )
    assert.deepEqual(statements.map((s) => s.offset), [0, 13, 23])
    assertOffsetsPointAtStatements(source)
  })

  it('gives offsets that point at each statement with quotes, comments and dollar quotes around', () => {
    const source = "-- description: x\ncreate index concurrently i on t ((a || ';'));\n/* c; */ do $$ begin null; end $$;\n  select E'\\';';\n"
    const statements = splitStatements(source)
    assert.equal(statements.length, 3)
    assert.equal(statements[0].offset, 0)
    assert.equal(statements[1].offset, source.indexOf('/* c; */'))
    assert.equal(statements[2].offset, source.indexOf("select E'"))
    assertOffsetsPointAtStatements(source)
  })

  it('reads an unterminated string to the end as one statement', () => {
    assert.deepEqual(texts("select 1; select 'never closed; select 2;"), ['select 1;', "select 'never closed; select 2;"])
  })
})

describe('positionToLineColumn', () => {
  it('maps position 1 to line 1, column 1', () => {
    assert.deepEqual(positionToLineColumn('select 1;', 1), {line: 1, column: 1, lineText: 'select 1;'})
  })

  it('maps a position on a later line, with that line as context', () => {
    const source = 'select 1;\nselect nope from t;\n'
    // PostgreSQL position of "nope": 1-based character index.
    const position = source.indexOf('nope') + 1
    assert.deepEqual(positionToLineColumn(source, position), {line: 2, column: 8, lineText: 'select nope from t;'})
  })

  it('maps the first character of a line to column 1', () => {
    const source = 'a\nbc\ndef'
    assert.deepEqual(positionToLineColumn(source, 6), {line: 3, column: 1, lineText: 'def'})
  })

  it("counts 'é' as one character", () => {
    const source = "select 'é', nope;"
    // s e l e c t _ ' é ' , _ n  ->  "nope" is the 13th character.
    assert.deepEqual(positionToLineColumn(source, 13), {line: 1, column: 13, lineText: source})
    assert.equal(Array.from(source)[12], 'n')
  })

  it('counts an emoji (a surrogate pair in JavaScript) as one character', () => {
    const source = "select '😀😀';\nselect nope;"
    // Line 1 is 12 characters plus the newline: "nope" on line 2 is character 13 + 8 = 21.
    assert.deepEqual(positionToLineColumn(source, 21), {line: 2, column: 8, lineText: 'select nope;'})
  })

  it('counts multi-byte characters on the same line before the column', () => {
    const source = "update t set v = '日本😀' || nope;"
    const position = Array.from(source).indexOf('n') + 1
    assert.equal(position, 27)
    assert.deepEqual(positionToLineColumn(source, position), {line: 1, column: 27, lineText: source})
  })

  it('accepts the position just past the end and refuses positions outside the text', () => {
    assert.deepEqual(positionToLineColumn('abc', 4), {line: 1, column: 4, lineText: 'abc'})
    assert.equal(positionToLineColumn('abc', 5), undefined)
    assert.equal(positionToLineColumn('abc', 0), undefined)
    assert.equal(positionToLineColumn('abc', -1), undefined)
    assert.equal(positionToLineColumn('abc', 1.5), undefined)
  })
})

describe('characterOffset', () => {
  it('counts code points, not UTF-16 units, before an index', () => {
    const source = '😀é;select 1'
    assert.equal(characterOffset(source, source.indexOf('select')), 3)
    assert.equal(characterOffset('plain', 3), 3)
  })

  it('turns a statement offset and a statement-relative position into a file position', () => {
    const source = "select '😀';\nselect nope;"
    const [, second] = splitStatements(source)
    // PostgreSQL reports "nope" at character 8 of the second statement.
    const filePosition = characterOffset(source, second.offset) + 8
    assert.deepEqual(positionToLineColumn(source, filePosition), {line: 2, column: 8, lineText: 'select nope;'})
  })
})

describe('quoteLiteral', () => {
  it('doubles quotes and backslashes inside E-syntax quotes, which read the same whatever standard_conforming_strings says', () => {
    assert.equal(quoteLiteral('tw-db 0.1.0'), "E'tw-db 0.1.0'")
    assert.equal(quoteLiteral("it's"), "E'it''s'")
    assert.equal(quoteLiteral('a\\b'), "E'a\\\\b'")
    assert.equal(quoteLiteral("\\'; drop table x; --"), "E'\\\\''; drop table x; --'")
    assert.equal(quoteLiteral(''), "E''")
  })

  it('refuses a NUL character, which would end a simple query early', () => {
    assert.throws(() => quoteLiteral('a\0b'), /NUL/)
  })
})
