using System.Text;

namespace Qed.Cli.CommandLine;

/// <summary>
/// The options of one command, declared once: the getopt parser, the synopsis and the <c>--help</c> text are all
/// built from this list, so what help shows is what the parser accepts.
/// </summary>
internal sealed class OptionTable
{
    private readonly GetOpt _getOpt;
    private readonly Dictionary<string, CliOption> _byKey = new(StringComparer.Ordinal);

    /// <summary>Declares a command's options.</summary>
    /// <param name="command">The command word (<c>check</c>).</param>
    /// <param name="operands">The operands as shown in the synopsis (<c>FILE</c>).</param>
    /// <param name="description">What the command does, one or more lines of help.</param>
    /// <param name="options">The options, in the order help lists them (and <see cref="ParsedArguments.CheckLater"/> checks them).</param>
    public OptionTable(string command, string operands, string description, params IReadOnlyList<CliOption> options)
    {
        Command = command;
        Operands = operands;
        Description = description;
        Options = options;
        var letters = new StringBuilder();
        var longOptions = new List<LongOption>();
        var longNames = new HashSet<string>(StringComparer.Ordinal);
        foreach (var option in options)
        {
            string key = option.Letter != '\0' ? option.Letter.ToString() : option.LongName!;
            if (!_byKey.TryAdd(key, option) || (option.LongName is not null && !longNames.Add(option.LongName)))
            {
                throw new ArgumentException($"{command}: option {option.Spellings} is declared twice.");
            }
            if (option.Letter != '\0')
            {
                letters.Append(option.Letter);
                if (option.TakesArgument)
                {
                    letters.Append(':');
                }
            }
            if (option.LongName is not null)
            {
                longOptions.Add(new LongOption(option.LongName, option.TakesArgument, key));
            }
        }
        _getOpt = new GetOpt(letters.ToString(), longOptions);
    }

    /// <summary>The command word.</summary>
    public string Command { get; }

    /// <summary>The operands as shown in the synopsis.</summary>
    public string Operands { get; }

    /// <summary>What the command does.</summary>
    public string Description { get; }

    /// <summary>The options in help order.</summary>
    public IReadOnlyList<CliOption> Options { get; }

    /// <summary>True when <paramref name="option"/> is one of this command's options.</summary>
    public bool Contains(CliOption option) => Options.Contains(option);

    /// <summary>
    /// Parses a command line: glibc getopt's rules (see <see cref="GetOpt"/>), each argument read by its option as it
    /// is met, and parsing stopped at <c>-h</c>/<c>--help</c> (<see cref="ParsedArguments.HelpRequested"/>).
    /// </summary>
    /// <exception cref="GetOptException">An unknown option, or one missing its argument.</exception>
    /// <exception cref="CliException">An argument its option refuses.</exception>
    public ParsedArguments Parse(IReadOnlyList<string> arguments)
    {
        var values = new List<(CliOption Option, object? Value)>();
        bool help = false;
        var result = _getOpt.Parse(arguments, found =>
        {
            var option = _byKey[found.Key];
            if (option.IsHelp)
            {
                help = true;
                return false;
            }
            values.Add((option, option.Read(found.Value)));
            return true;
        });
        return new ParsedArguments(this, values, result.Positionals, help);
    }

    /// <summary>The synopsis: <c>check [-f FMT] [-q] FILE</c> (help itself is left out).</summary>
    public string Synopsis => string.Join(' ', SynopsisParts);

    /// <summary>The synopsis in the pieces a line may be broken between: the command, each option, the operands.</summary>
    public IReadOnlyList<string> SynopsisParts
    {
        get
        {
            var parts = new List<string> { Command };
            foreach (var option in Options)
            {
                if (option.IsHelp)
                {
                    continue;
                }
                parts.Add((option.Required, option.Repeats) switch
                {
                    (true, true) => $"{option.Usage} [{option.Usage} ...]",
                    (true, false) => option.Usage,
                    (false, true) => $"[{option.Usage} ...]",
                    (false, false) => $"[{option.Usage}]",
                });
            }
            if (Operands.Length > 0)
            {
                parts.Add(Operands);
            }
            return parts;
        }
    }

    /// <summary>Writes <c>qed COMMAND --help</c>: the synopsis, the description and one line per option.</summary>
    public void WriteHelp(TextWriter writer, string program)
    {
        writer.Write($"usage: {Wrap([program, .. SynopsisParts], HelpWidth - 7, new string(' ', 8 + program.Length + Command.Length))}\n\n");
        foreach (string line in Description.Split('\n'))
        {
            writer.Write(line.Length == 0 ? "\n" : $"{line}\n");
        }
        writer.Write("\nOptions:\n");
        int width = Options.Max(o => o.Spellings.Length) + 2;
        foreach (var option in Options)
        {
            writer.Write($"  {option.Spellings.PadRight(width)}{Wrap(option.Help.Split(' '), HelpWidth - width - 2, new string(' ', width + 2))}\n");
        }
    }

    /// <summary>The column help text stays within.</summary>
    public const int HelpWidth = 100;

    /// <summary>
    /// Joins <paramref name="words"/> with spaces into lines that end by column <see cref="HelpWidth"/> (a longer word
    /// stays whole): the first line has <paramref name="width"/> columns (what its prefix leaves), each later line
    /// starts with <paramref name="indent"/> and has what that leaves.
    /// </summary>
    public static string Wrap(IEnumerable<string> words, int width, string indent)
    {
        var result = new StringBuilder();
        // Later lines count from the first line's start: the indent takes what exceeds the first line's prefix.
        int continuationStart = Math.Max(0, indent.Length - (HelpWidth - width));
        int lineLength = 0;
        bool lineEmpty = true;
        foreach (string word in words)
        {
            if (!lineEmpty && lineLength + 1 + word.Length > width)
            {
                result.Append('\n').Append(indent);
                lineLength = continuationStart;
                lineEmpty = true;
            }
            else if (!lineEmpty)
            {
                result.Append(' ');
                lineLength++;
            }
            result.Append(word);
            lineLength += word.Length;
            lineEmpty = false;
        }
        return result.ToString();
    }
}
