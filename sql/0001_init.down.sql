-- Exact inverse of 0001_init.up.sql.
DROP TABLE node;
DROP TABLE user_group;
DROP TABLE user;
DROP TABLE meta;
