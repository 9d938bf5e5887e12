//! The `lkg` dispatcher: `lkg <job> args` runs `lkg-<job> args` from PATH or
//! next to itself, passing arguments, output and the exit code through.

mod dispatcher;
