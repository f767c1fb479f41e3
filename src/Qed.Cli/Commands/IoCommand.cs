using Qed.Cli.CommandLine;
using Qed.Cli.Commands.Io;

namespace Qed.Cli.Commands;

/// <summary>
/// <c>qed io [-f FMT] [-r] [-t CACHE] [-n] [-U] [--l2-cache-size=SIZE] -c CMD [-c CMD ...] FILE</c>: a subset of qemu-io (<c>read</c>, <c>write</c>,
/// <c>flush</c>, <c>sleep</c>) with qemu-io's output. Commands run in order; the exit status is 1 when any of them failed.
/// </summary>
/// <remarks>
/// Locks as qemu-io: writable by default (the write lock; refused while QEMU or another qed has the image open),
/// <c>-r</c> takes the read locks (refused while something writes), <c>-r -U</c> shares everything.
/// </remarks>
internal static class IoCommand
{
    private static readonly CliOption<string> s_command = new('c', "cmd", "COMMAND", "a command to run (read, write, flush, sleep); repeat for more", v => v)
    {
        Required = true,
        Repeats = true,
    };

    private static readonly CliFlag s_readOnly = new('r', "read-only", "open the image read-only");

    // qemu-io checks the mode as soon as it meets -t.
    private static readonly CliOption<string> s_cache = CommonOptions.CacheMode('t', "cache",
        "the cache mode (accepted for compatibility; qed uses the page cache)", mode => $"Invalid cache option: {mode}", checkLater: false);

    private static readonly CliFlag s_noCache = new('n', "nocache", "short for -t none (accepted for compatibility)");

    /// <summary>The options of <c>qed io</c>.</summary>
    public static OptionTable Options { get; } = new("io", "FILE",
        "Run qemu-io style commands on an image (writable unless -r):\n" + string.Join('\n', IoSession.Subcommands.Select(c => $"  {c.Usage}")),
        CommonOptions.Help, s_command, CommonOptions.Format, s_readOnly, s_cache, s_noCache, CommonOptions.ForceShare, CommonOptions.L2CacheSize);

    /// <summary>Runs the command.</summary>
    public static int Run(IReadOnlyList<string> args, CommandContext context)
    {
        var parsed = Options.Parse(args);
        if (parsed.HelpRequested)
        {
            return HelpText.WriteCommand(context.Out, Options);
        }
        string? format = parsed.Get(CommonOptions.Format);
        bool readOnly = parsed.Has(s_readOnly);
        bool forceShare = parsed.Has(CommonOptions.ForceShare);
        long? l2CacheSize = parsed.GetValue(CommonOptions.L2CacheSize);
        var commands = parsed.All(s_command);
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
