using Qed.Cli.CommandLine;
using Qed.Cli.Commands.Io;

namespace Qed.Cli.Commands;

/// <summary>
/// <c>qed io [-f FMT] [-r] [-U] [--l2-cache-size=SIZE] -c CMD [-c CMD ...] FILE</c>: a subset of qemu-io (<c>read</c>, <c>write</c>,
/// <c>flush</c>, <c>sleep</c>) with qemu-io's output. Commands run in order; the exit status is 1 when any of them failed.
/// </summary>
/// <remarks>
/// Locks as qemu-io: writable by default (the write lock; refused while QEMU or another qed has the image open),
/// <c>-r</c> takes the read locks (refused while something writes), <c>-r -U</c> shares everything.
/// </remarks>
internal static class IoCommand
{
    private static readonly GetOpt s_options = new("c:f:rt:nUh",
        new LongOption("cmd", true, "c"),
        new LongOption("format", true, "f"),
        new LongOption("read-only", false, "r"),
        new LongOption("cache", true, "t"),
        new LongOption("nocache", false, "n"),
        new LongOption("force-share", false, "U"),
        new LongOption("help", false, "h"),
        ImageOpener.L2CacheSizeOption);

    /// <summary>Runs the command.</summary>
    public static int Run(IReadOnlyList<string> args, CommandContext context)
    {
        var parsed = s_options.Parse(args);
        string? format = null;
        bool readOnly = false;
        bool forceShare = false;
        long? l2CacheSize = null;
        var commands = new List<string>();
        foreach (var option in parsed.Options)
        {
            switch (option.Key)
            {
                case "c": commands.Add(option.Value!); break;
                case "f": format = option.Value; break;
                case "r": readOnly = true; break;
                case "U": forceShare = true; break;
                case "l2-cache-size": l2CacheSize = ImageOpener.ParseL2CacheSize(option.Value!); break;
                case "t":
                    // Cache modes change how often qemu flushes, not what is read or written; qed accepts them for compatibility.
                    if (option.Value is not ("none" or "writeback" or "writethrough" or "directsync" or "unsafe"))
                    {
                        throw new CliException($"Invalid cache mode '{option.Value}'");
                    }
                    break;
                case "h":
                    HelpText.Write(context.Out);
                    return 0;
            }
        }
        string fileName = parsed.SingleImage();
        if (commands.Count == 0)
        {
            throw new UsageException("Expecting at least one -c COMMAND (qed io has no interactive mode)");
        }

        using var device = ImageOpener.OpenForIo(fileName, format, readOnly, l2CacheSize, forceShare);
        var session = new IoSession(device, context);
        bool allSucceeded = true;
        foreach (string command in commands)
        {
            allSucceeded &= session.Execute(command);
        }
        return allSucceeded ? 0 : 1;
    }
}
