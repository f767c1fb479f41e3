namespace Qed.Cli.Commands;

/// <summary>The text of <c>qed --help</c>.</summary>
internal static class HelpText
{
    /// <summary>Writes the command summary.</summary>
    public static void Write(TextWriter writer)
    {
        writer.Write("""
            qed - a tool for QED (QEMU Enhanced Disk) images, in the style of qemu-img and qemu-io

            usage: qed [--help | --version] COMMAND [command options]

            Commands:
              create [-f qed|raw] [-o OPTIONS] [-b BACKING -F BACKING_FMT] [-u] [-q] FILE [SIZE]
                  Create a new image. SIZE takes k, M, G, T, P or E suffixes (powers of 1024);
                  without SIZE the size of the backing file is used.
                  OPTIONS (qed): size, cluster_size, table_size, backing_file, backing_fmt.
              info [-f FMT] [--output=human|json] [--backing-chain] [-U] FILE
                  Show the format, sizes and backing file of an image (read-only).
              check [-f FMT] [-r leaks|all] [--output=human|json] [-q] [-T CACHE] [-U] FILE
                  Check the metadata of a QED image. Without -r nothing on disk changes.
                  -r leaks truncates leaked clusters at the end of the file; -r all also
                  zeroes invalid table entries. After a repair the image is checked again.
                  Exit status: 0 clean, 1 check failed, 2 corruptions, 3 only leaks,
                  63 format without checks (raw).
              convert [-f FMT] [-O qed|raw] [-o OPTIONS] [-p] [-q] [-U] SOURCE DESTINATION
                  Copy the disk seen through SOURCE and its backing chain into a new,
                  standalone, sparse image.
              io [-f FMT] [-r] [-U] -c COMMAND [-c COMMAND ...] FILE
                  Run qemu-io style commands on an image (writable unless -r):
                    read [-qv] [-P PATTERN] OFFSET LENGTH
                    write [-q] [-P PATTERN | -z] OFFSET LENGTH
                    flush
                    sleep MILLISECONDS
              bench [-c COUNT] [-d DEPTH] [-f FMT] [--flush-interval=N] [--no-drain] [-i AIO] [-n]
                    [-o OFFSET] [--pattern=BYTE] [-q] [-s SIZE] [-S STEP] [-t CACHE] [-w] [-U] FILE
                  Send COUNT (default 75000) sequential read requests, or writes with -w, of
                  SIZE bytes (default 4096), DEPTH (default 64) in flight, the first at OFFSET,
                  each next one STEP bytes further (default SIZE), wrapping at the image size.
                  Writes are filled with BYTE (default 0). With --flush-interval a flush is
                  sent whenever the requests left are a multiple of N (N >= DEPTH), after the
                  requests in flight completed unless --no-drain. Prints the time taken and
                  the L2 cache hits, misses and evictions of the run (not with -q).
                  -t (none, writeback, writethrough, directsync, unsafe), -i (threads, native,
                  io_uring) and -n are accepted for compatibility: qed has no O_DIRECT and
                  always reads and writes through the host page cache.

            Every command that opens an image also takes --l2-cache-size=SIZE: the bytes of
            L2 tables to keep in memory (default 32M; at least one table slice is kept).

            Images are locked as QEMU locks them: a command that writes (io without -r, check -r,
            create, bench -w, the destination of convert) fails while QEMU or another qed has the
            image open; one that only reads fails while something writes it. -U (--force-share,
            read-only commands only) reads an image in use anyway; what it reads may be inconsistent.

            Without -f the format is probed: a file starting with the QED magic is qed, anything else raw.
            Errors are reported on one line on stderr and give exit status 1.

            """.ReplaceLineEndings("\n"));
    }
}
