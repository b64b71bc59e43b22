CREATE TABLE fruit(id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL);
INSERT INTO fruit(name, price) VALUES ('apple', 1.25), ('banana', 0.5), ('cherry', 4.0);
INSERT INTO fruit(name, price) SELECT name || '-' || id, price * 2 FROM fruit;
CREATE INDEX fruit_name ON fruit(name);
SELECT name, price FROM fruit WHERE price > 1 ORDER BY name;
SELECT count(*), sum(price) FROM fruit;
