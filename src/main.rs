fn main() -> std::process::ExitCode {
    read_published_files_without_mapping_them();
    incentives::cli::main()
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
