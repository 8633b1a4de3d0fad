-- Runs once, when the compose postgres volume is first created: the optional sandbox's own database.
CREATE DATABASE bipsync_sandbox;
