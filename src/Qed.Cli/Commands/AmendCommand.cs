using System.Globalization;
using System.Text;
using Qed.Cli.CommandLine;
using Qed.Cli.Commands.Rebase;
using Qed.Cli.Output;
using Qed.Formats;
using Qed.Formats.Qed;

namespace Qed.Cli.Commands;

/// <summary>
/// <c>qed amend [-f FMT] -o backing_file=NAME,backing_fmt=FMT [-p] [-q] [-t CACHE] FILE</c>: changes the backing file
/// named in a QED header in place, which qemu-img 7.2 refuses for QED (<c>Format driver 'qed' does not support option
/// amendment</c>).
/// </summary>
/// <remarks>
/// The rules are <c>qed rebase -u</c>'s and so are the bytes written: the header only, crash-safe, no data copied (the
/// disk reads differently unless the new backing file holds what the old one did). <c>backing_fmt</c> is required with a
/// non-empty <c>backing_file</c> (the format is never probed); <c>backing_fmt</c> alone re-records the format of the
/// backing file already named; <c>backing_file=</c> (empty) removes it. The new name is refused when its chain leads back
/// to the image. The geometry and the size cannot be amended: <c>cluster_size</c> and <c>table_size</c> are fixed at
/// creation, and <c>qed resize</c> changes the size.
/// </remarks>
internal static class AmendCommand
{
    private static readonly CliOption<string> s_options = new('o', null, "OPTIONS",
        "what to change: backing_file=NAME,backing_fmt=FMT (-o help lists them)", v => v) { Repeats = true };
    private static readonly CliFlag s_progress = new('p', null, "show progress");
    private static readonly CliOption<string> s_cache = CommonOptions.CacheMode('t', null,
        "the image's cache mode (accepted for compatibility)", mode => $"Invalid cache option: {mode}", checkLater: true);

    private static readonly (string Name, string Help)[] s_amendable =
    [
        (ImageCreateOption.BackingFileName, "File name of a base image"),
        (ImageCreateOption.BackingFormatName, "Image format of the base image"),
    ];

    /// <summary>The options of <c>qed amend</c>.</summary>
    public static OptionTable Options { get; } = new("amend", "FILE",
        """
        Change the backing file named in FILE's header, in place (as rebase -u does;
        no data is copied).
        """,
        CommonOptions.Help, CommonOptions.FormatLetter, s_options, s_progress, CommonOptions.Quiet, s_cache);

    /// <summary>Runs the command.</summary>
    public static int Run(IReadOnlyList<string> args, CommandContext context)
    {
        var parsed = Options.Parse(args);
        if (parsed.HelpRequested)
        {
            return HelpText.WriteCommand(context.Out, Options);
        }
        string? format = parsed.Get(CommonOptions.FormatLetter);
        bool quiet = parsed.Has(CommonOptions.Quiet);
        bool progress = parsed.Has(s_progress) && !quiet;
        var optionArguments = parsed.All(s_options);
        if (optionArguments.Count == 0)
        {
            throw new UsageException("Must specify options (-o)");
        }
        var optionList = ImageOptionList.Parse(optionArguments);
        if (optionList.IsHelpRequest && parsed.Positionals.Count == 0 && format == ImageFormats.Qed.Name)
        {
            // qemu-img lists the amend options of -f's format without an image.
            context.Out.Write(OptionHelp());
            return 0;
        }
        if (parsed.Positionals.Count != 1)
        {
            // qemu-img reports this one without the pointer to the help.
            throw new CliException("Expecting one image file name");
        }
        string fileName = parsed.Positionals[0];
        parsed.CheckLater();

        var reporter = new ProgressReporter(progress ? context.Out : null);
        reporter.Start();
        using var image = ImageOpener.Open(fileName, format, readOnly: false, withBacking: false);
        var imageFormat = ImageFormats.Of(image);
        if (!imageFormat.SupportsBackingFile)
        {
            throw new CliException($"Format driver '{imageFormat.Name}' does not support option amendment");
        }
        if (optionList.IsHelpRequest)
        {
            context.Out.Write(OptionHelp());
            return 0;
        }
        foreach (var (key, _) in optionList.Entries)
        {
            if (!s_amendable.Any(o => o.Name == key))
            {
                throw new CliException(Unamendable(key));
            }
        }

        string? backingFile = optionList.Get(ImageCreateOption.BackingFileName);
        string? backingFormat = optionList.Get(ImageCreateOption.BackingFormatName);
        BackingChange.CheckFormatName(backingFormat);
        if (backingFile is null)
        {
            // backing_fmt alone: the name stays, its format is recorded anew.
            var description = imageFormat.Describe(image);
            backingFile = description.BackingFileName
                ?? throw new CliException($"backing_fmt={backingFormat} needs a backing file, and '{fileName}' has none (give backing_file too)");
        }
        else if (backingFile.Length == 0 && backingFormat is not null)
        {
            throw new CliException(BackingChange.Refusal(backingFile, "a backing format without a backing file makes no sense"));
        }
        BackingChange.RequireFormat(backingFile, backingFormat);
        BackingChange.CheckImage(image, backingFile);
        BackingChange.CheckLoop(fileName, backingFile, backingFormat);
        BackingChange.Apply(image, backingFile, backingFormat);
        reporter.Finish();
        return 0;
    }

    /// <summary>The refusal of an option that exists at creation but cannot change, or that does not exist at all.</summary>
    private static string Unamendable(string key) => key switch
    {
        QedFormat.ClusterSizeName => "Invalid parameter 'cluster_size': Changing the cluster size is not supported (it is fixed at creation)",
        QedFormat.TableSizeName => "Invalid parameter 'table_size': Changing the table size is not supported (it is fixed at creation)",
        ImageCreateOption.SizeName => "Invalid parameter 'size': use 'qed resize' to change the size",
        _ => $"Invalid parameter '{key}'",
    };

    /// <summary><c>-o help</c>: the amendable options in qemu-img's layout.</summary>
    private static string OptionHelp()
    {
        var text = new StringBuilder("Amend options for 'qed':\n");
        foreach (var (name, help) in s_amendable)
        {
            text.Append(CultureInfo.InvariantCulture, $"  {name + "=<str>",-22} - {help}\n");
        }
        return text.ToString();
    }
}
