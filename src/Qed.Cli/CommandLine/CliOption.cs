namespace Qed.Cli.CommandLine;

/// <summary>
/// One option of a command, declared once in the command's <see cref="OptionTable"/>: its letter and long name, its
/// argument, how the argument is read, and its help line. Parsing, <c>--help</c> and validation all come from here.
/// </summary>
internal abstract class CliOption
{
    private protected CliOption(char letter, string? longName, string? argument, string help)
    {
        if (letter == '\0' && longName is null)
        {
            throw new ArgumentException("An option needs a letter or a long name.");
        }
        Letter = letter;
        LongName = longName;
        Argument = argument;
        Help = help;
    }

    /// <summary>The short option letter (<c>f</c> for <c>-f</c>), or <c>'\0'</c> for a long-only option.</summary>
    public char Letter { get; }

    /// <summary>The long name without dashes (<c>format</c> for <c>--format</c>), or null for a letter-only option.</summary>
    public string? LongName { get; }

    /// <summary>How the argument is shown in help (<c>FMT</c>, <c>human|json</c>), or null for a flag.</summary>
    public string? Argument { get; }

    /// <summary>True when the option takes an argument.</summary>
    public bool TakesArgument => Argument is not null;

    /// <summary>The help line.</summary>
    public string Help { get; }

    /// <summary>True when the synopsis shows the option as required (<c>-c CMD</c> rather than <c>[-c CMD]</c>).</summary>
    public bool Required { get; init; }

    /// <summary>True when giving the option again adds a value instead of replacing it (the synopsis shows <c>[-c CMD ...]</c>).</summary>
    public bool Repeats { get; init; }

    /// <summary>True for <c>-h</c>/<c>--help</c>: parsing stops there, as qemu-img prints its help as soon as it meets it.</summary>
    public bool IsHelp { get; init; }

    /// <summary>The option as written in a synopsis: <c>-f FMT</c>, <c>--output=human|json</c>, <c>-q</c>.</summary>
    public string Usage => Letter != '\0'
        ? Argument is null ? $"-{Letter}" : $"-{Letter} {Argument}"
        : Argument is null ? $"--{LongName}" : $"--{LongName}={Argument}";

    /// <summary>Every spelling: <c>-f, --format=FMT</c>.</summary>
    public string Spellings
    {
        get
        {
            string longPart = LongName is null ? "" : Argument is null ? $"--{LongName}" : $"--{LongName}={Argument}";
            if (Letter == '\0')
            {
                return longPart;
            }
            string shortPart = LongName is null && Argument is not null ? $"-{Letter} {Argument}" : $"-{Letter}";
            return LongName is null ? shortPart : $"{shortPart}, {longPart}";
        }
    }

    /// <summary>Reads the argument (null for a flag) when the option is met on the command line.</summary>
    /// <exception cref="CliException">The argument is not valid; the message is the one qemu-img gives.</exception>
    internal abstract object? Read(string? argument);

    /// <summary>The check qemu-img makes only after all options were read (and the operands counted), or nothing.</summary>
    internal abstract void CheckLater(object? value);
}

/// <summary>An option whose argument is read as a <typeparamref name="T"/>.</summary>
internal sealed class CliOption<T> : CliOption
{
    private readonly Func<string, T> _read;
    private readonly Action<T>? _checkLater;

    /// <summary>Declares an option with an argument.</summary>
    /// <param name="letter">The short letter, or <c>'\0'</c>.</param>
    /// <param name="longName">The long name, or null.</param>
    /// <param name="argument">The argument's name in help.</param>
    /// <param name="help">The help line.</param>
    /// <param name="read">Reads the argument as soon as the option is met (qemu-img checks most arguments inside its getopt loop, so the first bad one is reported).</param>
    /// <param name="checkLater">A check qemu-img makes after the loop instead; run by <see cref="ParsedArguments.CheckLater"/>.</param>
    public CliOption(char letter, string? longName, string argument, string help, Func<string, T> read, Action<T>? checkLater = null)
        : base(letter, longName, argument, help)
    {
        _read = read;
        _checkLater = checkLater;
    }

    internal override object? Read(string? argument) => _read(argument!);

    internal override void CheckLater(object? value) => _checkLater?.Invoke((T)value!);
}

/// <summary>An option without an argument.</summary>
internal sealed class CliFlag : CliOption
{
    /// <summary>Declares a flag.</summary>
    public CliFlag(char letter, string? longName, string help) : base(letter, longName, null, help) { }

    internal override object? Read(string? argument) => true;

    internal override void CheckLater(object? value) { }
}
