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
              convert [-f FMT] [-O qed|raw] [-o OPTIONS] [-p] [-q] SOURCE DESTINATION
                  Copy the disk seen through SOURCE and its backing chain into a new,
                  standalone, sparse image.
              io [-f FMT] [-r] -c COMMAND [-c COMMAND ...] FILE
                  Run qemu-io style commands on an image:
                    read [-qv] [-P PATTERN] OFFSET LENGTH
                    write [-q] [-P PATTERN | -z] OFFSET LENGTH
                    flush

            Without -f the format is probed: a file starting with the QED magic is qed, anything else raw.
            Errors are reported on one line on stderr and give exit status 1.

            """.ReplaceLineEndings("\n"));
    }
}
