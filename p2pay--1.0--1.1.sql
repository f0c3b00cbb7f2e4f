/* p2pay--1.0--1.1.sql: from 1.0 to 1.1 */

\echo Use "ALTER EXTENSION p2pay UPDATE TO '1.1'" to load this file. \quit
