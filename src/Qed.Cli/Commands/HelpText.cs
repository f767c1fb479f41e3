using Qed.Cli.CommandLine;

namespace Qed.Cli.Commands;

/// <summary>The text of <c>qed --help</c> and <c>qed COMMAND --help</c>, built from the commands' option tables.</summary>
internal static class HelpText
{
    /// <summary>Writes the summary of every command: its synopsis (from its option table) and what it does.</summary>
    public static void Write(TextWriter writer, IEnumerable<OptionTable> commands)
    {
        writer.Write($"""
            {Program.Name} - a tool for QED (QEMU Enhanced Disk) images, in the style of qemu-img and qemu-io

            usage: {Program.Name} [--help | --version] COMMAND [command options]
                   {Program.Name} COMMAND --help   lists the options of one command

            Commands:

            """.ReplaceLineEndings("\n"));
        foreach (var table in commands)
        {
            writer.Write($"  {OptionTable.Wrap(table.SynopsisParts, OptionTable.HelpWidth - 2, new string(' ', 8))}\n");
            foreach (string line in table.Description.Split('\n'))
            {
                writer.Write($"      {line}\n");
            }
        }
        writer.Write("""

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

    /// <summary>Writes one command's help (<c>qed check --help</c>) and returns exit status 0.</summary>
    public static int WriteCommand(TextWriter writer, OptionTable table)
    {
        table.WriteHelp(writer, Program.Name);
        return 0;
    }
}
