using System.Reflection;
using Qed.Cli.CommandLine;
using Qed.Cli.Commands;

namespace Qed.Cli;

/// <summary>Entry point of <c>qed</c>, a qemu-img-like tool for QED images.</summary>
public static class Program
{
    /// <summary>The program name used in messages (<c>qed: ...</c>).</summary>
    internal const string Name = "qed";

    /// <summary>The commands, each with its option table (help lists them in this order).</summary>
    internal static IReadOnlyList<(OptionTable Options, Func<IReadOnlyList<string>, CommandContext, int> Run)> Commands { get; } =
    [
        (CreateCommand.Options, CreateCommand.Run),
        (InfoCommand.Options, InfoCommand.Run),
        (CheckCommand.Options, CheckCommand.Run),
        (ConvertCommand.Options, ConvertCommand.Run),
        (IoCommand.Options, IoCommand.Run),
        (BenchCommand.Options, BenchCommand.Run),
        (MapCommand.Options, MapCommand.Run),
        (MeasureCommand.Options, MeasureCommand.Run),
        (CompareCommand.Options, CompareCommand.Run),
        (DdCommand.Options, DdCommand.Run),
        (ResizeCommand.Options, ResizeCommand.Run),
        (RebaseCommand.Options, RebaseCommand.Run),
        (AmendCommand.Options, AmendCommand.Run),
        (CommitCommand.Options, CommitCommand.Run),
        (ServeCommand.Options, ServeCommand.Run),
    ];

    private static int Main(string[] args)
    {
        // Buffered writers: per-line console flushes would dominate short commands.
        using var stdout = new StreamWriter(Console.OpenStandardOutput(), bufferSize: 1 << 16) { NewLine = "\n", AutoFlush = false };
        using var stderr = new StreamWriter(Console.OpenStandardError()) { NewLine = "\n", AutoFlush = true };
        return Run(args, stdout, stderr);
    }

    /// <summary>Runs one <c>qed</c> command line and returns the exit status; everything goes to the given writers.</summary>
    /// <param name="args">The arguments after the program name, e.g. <c>["info", "--output=json", "a.qed"]</c>.</param>
    /// <param name="stdout">Receives the normal output.</param>
    /// <param name="stderr">Receives error messages, each one line starting with <c>qed: </c>.</param>
    /// <returns>0 on success, 1 on any failure (as qemu-img and qemu-io); <c>check</c> also returns qemu-img check's 2 (corruptions), 3 (only leaks) and 63 (format without checks).</returns>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(stdout);
        ArgumentNullException.ThrowIfNull(stderr);
        var context = new CommandContext(stdout, stderr);
        var outer = CommandContext.Current;
        CommandContext.Current = context;
        try
        {
            return Dispatch(args, context);
        }
        catch (GetOptException e)
        {
            string message = e.Error == GetOptError.MissingArgument
                ? $"missing argument for option '{e.Argument}'"
                : $"unrecognized option '{e.Argument}'";
            return context.UsageError(message);
        }
        catch (UsageException e)
        {
            return context.UsageError(e.Message);
        }
        catch (Exception e) when (IsReportable(e))
        {
            int status = context.Error(Describe(e));
            if (LockHint(e) is { } hint)
            {
                // qemu-img's second line for an image in use, printed as is.
                context.Err.WriteLine(hint);
            }
            return status;
        }
        finally
        {
            CommandContext.Current = outer;
            FlushQuietly(stdout);
            FlushQuietly(stderr);
        }
    }

    /// <summary>Flushes a writer whose reader may be gone (<c>qed info x | head -1</c>); there is nobody left to tell.</summary>
    private static void FlushQuietly(TextWriter writer)
    {
        try
        {
            writer.Flush();
        }
        catch (IOException)
        {
        }
    }

    private static int Dispatch(string[] args, CommandContext context)
    {
        if (args.Length == 0)
        {
            throw new UsageException("Not enough arguments");
        }
        string command = args[0];
        switch (command)
        {
            case "-h" or "--help" or "help":
                HelpText.Write(context.Out, Commands.Select(c => c.Options));
                return 0;
            case "-V" or "--version" or "version":
                context.Out.WriteLine(VersionLine);
                return 0;
        }
        if (command.StartsWith('-'))
        {
            throw new GetOptException(GetOptError.Unrecognized, command, null);
        }
        foreach (var (options, run) in Commands)
        {
            if (options.Command == command)
            {
                return run(args[1..], context);
            }
        }
        throw new UsageException($"Command not found: {command}");
    }

    /// <summary>
    /// <c>qed version 0.8.0 (commit abc1234)</c>, in the shape of qemu-img's first line. The build stamps the commit into
    /// the informational version (<c>0.8.0+&lt;sha&gt;</c>, see Directory.Build.props); a build from a tree without git
    /// has none and prints the version alone.
    /// </summary>
    internal static string VersionLine => FormatVersion(
        typeof(Program).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
        ?? typeof(Program).Assembly.GetName().Version?.ToString(3)
        ?? "0");

    /// <summary>The version line for an informational version such as <c>0.8.0+d64e4ec96ad3...</c>.</summary>
    internal static string FormatVersion(string informationalVersion)
    {
        int plus = informationalVersion.IndexOf('+', StringComparison.Ordinal);
        if (plus < 0)
        {
            return $"{Name} version {informationalVersion}";
        }
        string commit = informationalVersion[(plus + 1)..];
        return $"{Name} version {informationalVersion[..plus]} (commit {commit[..Math.Min(commit.Length, 7)]})";
    }

    /// <summary>The failures a user can cause (bad files, bad arguments, I/O errors); anything else is a bug and keeps its stack trace.</summary>
    internal static bool IsReportable(Exception e) =>
        e is CliException or QedException or IOException or UnauthorizedAccessException or ArgumentException or FormatException or NotSupportedException;

    /// <summary>QEMU's "Is another process using the image" line when the failure (or one it wraps) is a lock conflict.</summary>
    internal static string? LockHint(Exception? e)
    {
        for (; e is not null; e = e.InnerException)
        {
            if (e is QedLockException locked)
            {
                return locked.Hint;
            }
        }
        return null;
    }

    /// <summary>The one-line message for a failure.</summary>
    internal static string Describe(Exception e)
    {
        string message = e is ArgumentException argument && argument.ParamName is not null
            ? argument.Message.Replace($" (Parameter '{argument.ParamName}')", "", StringComparison.Ordinal)
            : e.Message;
        return message.ReplaceLineEndings(" ").Trim();
    }
}
