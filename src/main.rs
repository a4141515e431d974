fn main() -> std::process::ExitCode {
    return_freed_memory();
    read_published_files_without_mapping_them();
    incentives::cli::main()
}

/// The analyst tools run one polars question after another, each on its own threads: mimalloc,
/// which keeps freed memory for the next chunk (what a run wants), kept every question's
/// buffers, and `report` on a 10M-line CSV cycle grew to 1,058 MB although no question
/// needs more than about 500 MB; told to return freed memory at once and to commit arenas
/// as they are used, the same report peaks at 556 MB (BENCHMARKS.md). mimalloc reads its
/// options when the process loads, before `main`: `explain`, `report` and `query` start
/// again once with them (an operator's own setting is kept; if this program cannot be
/// started again, it goes on as it is). So does `run`: a run in partitions frees one
/// partition's lines and rows before the next, and the merge's buffers came on top of what
/// mimalloc kept (10M lines within 1GiB, Parquet outputs: 1,037 MiB kept, 960 MiB returned).
fn return_freed_memory() {
    const OPTIONS: [(&str, &str); 2] = [
        ("MIMALLOC_PURGE_DELAY", "0"),
        ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
    ];
    let returning =
        subcommand().is_some_and(|a| a == "explain" || a == "report" || a == "query" || a == "run");
    if !returning
        || OPTIONS
            .iter()
            .any(|(var, _)| std::env::var_os(var).is_some())
    {
        return;
    }
    let Ok(me) = std::env::current_exe() else {
        return;
    };
    use std::os::unix::process::CommandExt;
    let mut again = std::process::Command::new(me);
    again.args(std::env::args_os().skip(1));
    if let Some(name) = std::env::args_os().next() {
        again.arg0(name);
    }
    again.envs(OPTIONS);
    // Only returns if the program could not be started again.
    let _ = again.exec();
}

/// The subcommand named on the command line: the first argument that is not one of the global
/// options (`-q`, `--quiet`, `--log-format F` or `--log-format=F`) written before it.
fn subcommand() -> Option<std::ffi::OsString> {
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        if a == "--log-format" {
            args.next();
        } else if !a.to_string_lossy().starts_with('-') {
            return Some(a);
        }
    }
    None
}

/// The analyst tools read published cycles through polars, which maps an uncompressed local
/// file into memory whole: every page it touches counts in the process's resident memory (a
/// 1.1 GB `line_outcomes.csv` scanned for one partner peaked at 1.7 GB). Read in chunks
/// instead, the way polars reads object storage, and prefetch two Parquet row groups, not
/// one per core: at 10M lines `explain --partner` on CSV went from 1,724 MB to about 700 MB
/// (BENCHMARKS.md). An operator's own setting of either variable is kept. Reading in chunks
/// needs polars' temporary folder, named after `$USER` or `$HOME`: without both (a bare cron
/// environment) polars would panic, so the files are mapped as before.
fn read_published_files_without_mapping_them() {
    if std::env::var_os("HOME").is_none() && std::env::var_os("USER").is_none() {
        return;
    }
    for (var, value) in [
        ("POLARS_FORCE_ASYNC", "1"),
        ("POLARS_ROW_GROUP_PREFETCH_SIZE", "2"),
    ] {
        if std::env::var_os(var).is_none() {
            // SAFETY: the first thing `main` does, before any thread exists, so nothing reads
            // the environment while it changes.
            unsafe { std::env::set_var(var, value) };
        }
    }
}

// glibc's allocator returns freed chunk buffers to the kernel and faults them back in on the
// next chunk; mimalloc keeps them, which cut system time by more than half at 10M lines.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
