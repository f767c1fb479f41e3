namespace Qed.Cli.CommandLine;

/// <summary>
/// A small GNU-getopt-style parser, enough for qemu-img habits: clustered short options (<c>-qu</c>),
/// values attached or separate (<c>-fqed</c>, <c>-f qed</c>), long options with <c>=</c> or a separate value
/// (<c>--output=json</c>, <c>--output json</c>) and unambiguous prefixes (<c>--back</c>), options after
/// positional arguments (GNU permutation), and <c>--</c> to end the options.
/// </summary>
internal sealed class GetOpt
{
    private readonly string _shortOptions;
    private readonly IReadOnlyList<LongOption> _longOptions;

    /// <summary>Creates a parser.</summary>
    /// <param name="shortOptions">getopt's option string: letters, each followed by ':' when it takes a value (e.g. <c>"f:o:qh"</c>).</param>
    /// <param name="longOptions">The long options.</param>
    public GetOpt(string shortOptions, params IReadOnlyList<LongOption> longOptions)
    {
        _shortOptions = shortOptions;
        _longOptions = longOptions;
    }

    /// <summary>Splits <paramref name="arguments"/> into options and positional arguments.</summary>
    /// <param name="arguments">The command line after the command name.</param>
    /// <param name="found">Called for each option as it is met, before anything after it is looked at (as glibc's getopt
    /// loop sees them: a bad value reported there comes before a mistake further right); returns false to stop parsing.</param>
    /// <exception cref="GetOptException">An option is unknown or lacks its value.</exception>
    public GetOptResult Parse(IReadOnlyList<string> arguments, Func<ParsedOption, bool>? found = null)
    {
        var options = new OptionSink(found);
        var positionals = new List<string>();
        for (int i = 0; i < arguments.Count; i++)
        {
            string argument = arguments[i];
            if (argument == "--")
            {
                for (i++; i < arguments.Count; i++)
                {
                    positionals.Add(arguments[i]);
                }
                break;
            }
            if (argument.StartsWith("--", StringComparison.Ordinal))
            {
                options.Add(ParseLong(arguments, ref i));
            }
            else if (argument.Length > 1 && argument[0] == '-')
            {
                ParseShortCluster(arguments, ref i, options);
            }
            else
            {
                positionals.Add(argument);
            }
            if (options.Stopped)
            {
                break;
            }
        }
        return new GetOptResult(options.Options, positionals);
    }

    /// <summary>Collects the options found and passes each to the caller's callback.</summary>
    private sealed class OptionSink(Func<ParsedOption, bool>? found)
    {
        public List<ParsedOption> Options { get; } = [];

        public bool Stopped { get; private set; }

        public void Add(ParsedOption option)
        {
            Options.Add(option);
            if (found is not null && !found(option))
            {
                Stopped = true;
            }
        }
    }

    private ParsedOption ParseLong(IReadOnlyList<string> arguments, ref int index)
    {
        string argument = arguments[index];
        int equals = argument.IndexOf('=', StringComparison.Ordinal);
        string name = equals < 0 ? argument[2..] : argument[2..equals];
        var option = FindLong(name) ?? throw new GetOptException(GetOptError.Unrecognized, argument, null);
        if (!option.HasArgument)
        {
            if (equals >= 0)
            {
                throw new GetOptException(GetOptError.Unrecognized, argument, null);
            }
            return new ParsedOption(option.Key, null);
        }
        if (equals >= 0)
        {
            return new ParsedOption(option.Key, argument[(equals + 1)..]);
        }
        if (index + 1 >= arguments.Count)
        {
            throw new GetOptException(GetOptError.MissingArgument, argument, null);
        }
        index++;
        return new ParsedOption(option.Key, arguments[index]);
    }

    /// <summary>An exact match, else the only option the name is a prefix of (glibc's abbreviations); null when none or ambiguous.</summary>
    private LongOption? FindLong(string name)
    {
        if (name.Length == 0)
        {
            return null;
        }
        LongOption? candidate = null;
        foreach (var option in _longOptions)
        {
            if (option.Name == name)
            {
                return option;
            }
            if (option.Name.StartsWith(name, StringComparison.Ordinal))
            {
                if (candidate is not null && candidate.Key != option.Key)
                {
                    return null;
                }
                candidate = option;
            }
        }
        return candidate;
    }

    private void ParseShortCluster(IReadOnlyList<string> arguments, ref int index, OptionSink options)
    {
        string argument = arguments[index];
        for (int j = 1; j < argument.Length; j++)
        {
            char letter = argument[j];
            int at = letter == ':' ? -1 : _shortOptions.IndexOf(letter, StringComparison.Ordinal);
            if (at < 0)
            {
                throw new GetOptException(GetOptError.Unrecognized, argument, letter);
            }
            bool takesValue = at + 1 < _shortOptions.Length && _shortOptions[at + 1] == ':';
            if (!takesValue)
            {
                options.Add(new ParsedOption(letter.ToString(), null));
                if (options.Stopped)
                {
                    return;
                }
                continue;
            }
            if (j + 1 < argument.Length)
            {
                options.Add(new ParsedOption(letter.ToString(), argument[(j + 1)..]));
                return;
            }
            if (index + 1 >= arguments.Count)
            {
                throw new GetOptException(GetOptError.MissingArgument, argument, letter);
            }
            index++;
            options.Add(new ParsedOption(letter.ToString(), arguments[index]));
            return;
        }
    }
}
