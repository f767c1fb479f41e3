using System.Globalization;
using Qed.Cli.CommandLine;
using Qed.Cli.Output;
using Qed.IO;

namespace Qed.Cli.Commands.Io;

/// <summary>An open image and the commands run on it, printing what qemu-io prints.</summary>
/// <remarks>
/// Where qemu-io writes each message matters for scripts: results, I/O failures and argument errors go to
/// stdout; "bad argument count", unknown commands and getopt complaints go to stderr.
/// </remarks>
internal sealed class IoSession
{
    private static readonly IoSubcommand[] s_subcommands = [new ReadSubcommand(), new WriteSubcommand(), new FlushSubcommand(), new SleepSubcommand()];

    /// <summary>Creates a session on an open device.</summary>
    public IoSession(BlockDevice device, CommandContext context)
    {
        Device = device;
        Context = context;
    }

    /// <summary>The image.</summary>
    public BlockDevice Device { get; }

    /// <summary>The output writers.</summary>
    public CommandContext Context { get; }

    /// <summary>stdout.</summary>
    public TextWriter Out => Context.Out;

    /// <summary>Runs one <c>-c</c> command line; returns false when it failed.</summary>
    public bool Execute(string commandLine)
    {
        // qemu-io splits a command on white space, without quoting.
        string[] words = commandLine.Split([' ', '\t', '\n', '\r'], StringSplitOptions.RemoveEmptyEntries);
        if (words.Length == 0)
        {
            return true;
        }
        var command = Array.Find(s_subcommands, c => c.Name == words[0]);
        if (command is null)
        {
            Context.Err.WriteLine($"command \"{words[0]}\" not found");
            return false;
        }
        var arguments = words[1..];
        if (arguments.Length < command.MinArguments || (command.MaxArguments >= 0 && arguments.Length > command.MaxArguments))
        {
            Context.Err.WriteLine(DescribeBadCount(command, arguments.Length));
            return false;
        }
        if (command.Writes && Device.IsReadOnly)
        {
            Context.Error("Block node is read-only");
            return false;
        }
        return command.Run(this, arguments);
    }

    /// <summary>The commands <c>-c</c> runs, in the order help lists them.</summary>
    public static IReadOnlyList<IoSubcommand> Subcommands => s_subcommands;

    /// <summary>
    /// Parses a command's options with its table; on a getopt mistake prints glibc's complaint and the usage, on a bad
    /// value qemu-io's message (on stdout, as qemu-io prints it); null when either happened.
    /// </summary>
    public ParsedArguments? ParseOptions(IoSubcommand command, IReadOnlyList<string> arguments)
    {
        try
        {
            return command.Options.Parse(arguments);
        }
        catch (GetOptException e)
        {
            Out.Flush();
            Context.Err.WriteLine(e.ShortOption is { } letter
                ? e.Error == GetOptError.MissingArgument
                    ? $"{command.Name}: option requires an argument -- '{letter}'"
                    : $"{command.Name}: invalid option -- '{letter}'"
                : $"{command.Name}: unrecognized option '{e.Argument}'");
            PrintUsage(command);
            return null;
        }
        catch (CliException e)
        {
            Out.WriteLine(e.Message);
            return null;
        }
    }

    /// <summary>Prints the command's usage line (qemu-io does this on stdout).</summary>
    public void PrintUsage(IoSubcommand command) => Out.WriteLine(command.Usage);

    /// <summary>
    /// Reads the <c>off len</c> pair of a data command: false after printing qemu-io's line when a number is malformed,
    /// the length does not fit one request, or the range leaves the image.
    /// </summary>
    public bool TryParseRange(IoSubcommand command, IReadOnlyList<string> positionals, out long offset, out int length)
    {
        offset = 0;
        length = 0;
        if (IoArguments.ParseNumber(positionals[0], Out) is not { } start
            || IoArguments.ParseLength(positionals[1], Out) is not { } count
            || !CheckRange(command.Name, start, count))
        {
            return false;
        }
        (offset, length) = (start, count);
        return true;
    }

    /// <summary>True when <c>[offset, offset+length)</c> lies inside the image; otherwise prints <c>VERB failed: Input/output error</c> as qemu does.</summary>
    private bool CheckRange(string verb, long offset, long length)
    {
        if (offset <= Device.Size - length)
        {
            return true;
        }
        Out.WriteLine($"{verb} failed: Input/output error");
        return false;
    }

    /// <summary>Prints <c>VERB LEN/LEN bytes at offset OFF</c> and the statistics line.</summary>
    public void Report(string verb, long offset, int length, TimeSpan elapsed)
    {
        Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{verb} {length}/{length} bytes at offset {offset}"));
        Out.WriteLine(IoStatistics.Format(length, 1, elapsed));
    }

    /// <summary>Prints <c>VERB failed: reason</c> for an engine failure.</summary>
    public void ReportFailure(string verb, Exception e) => Out.WriteLine($"{verb} failed: {Program.Describe(e)}");

    private static string DescribeBadCount(IoSubcommand command, int count)
    {
        string expected = command.MaxArguments == command.MinArguments
            ? $"{command.MinArguments}"
            : command.MaxArguments < 0
                ? $"at least {command.MinArguments}"
                : $"between {command.MinArguments} and {command.MaxArguments}";
        return $"bad argument count {count} to {command.Name}, expected {expected} arguments";
    }
}
