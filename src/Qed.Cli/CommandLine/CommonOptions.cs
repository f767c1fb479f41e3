using Qed.Cli.Commands;

namespace Qed.Cli.CommandLine;

/// <summary>The options several commands share, declared once with qemu-img's spelling and messages.</summary>
internal static class CommonOptions
{
    /// <summary><c>-h</c>, <c>--help</c>.</summary>
    public static CliFlag Help { get; } = new('h', "help", "show this help") { IsHelp = true };

    /// <summary><c>-f FMT</c> without a long name (qemu-img create, convert and bench have none).</summary>
    public static CliOption<string> FormatLetter { get; } = new('f', null, "FMT", "the image format (qed or raw); probed when not given", v => v);

    /// <summary><c>-f</c>, <c>--format=FMT</c> (qemu-img info and check, qemu-io).</summary>
    public static CliOption<string> Format { get; } = new('f', "format", "FMT", "the image format (qed or raw); probed when not given", v => v);

    /// <summary><c>-q</c>.</summary>
    public static CliFlag Quiet { get; } = new('q', null, "quiet: print no output except errors");

    /// <summary><c>-U</c>, <c>--force-share</c>.</summary>
    public static CliFlag ForceShare { get; } = new('U', "force-share", "open an image in use anyway (read-only only; what it reads may be inconsistent)");

    /// <summary><c>--output=human|json</c>, checked after the operands as qemu-img does.</summary>
    public static CliOption<string> Output { get; } = new('\0', "output", "human|json", "the report's format (default human)", v => v,
        checkLater: v =>
        {
            if (v is not ("human" or "json"))
            {
                throw new CliException("--output must be used with human or json as argument.");
            }
        });

    /// <summary><c>--l2-cache-size=SIZE</c>, which every command that opens an image takes (not in qemu-img).</summary>
    public static CliOption<long> L2CacheSize { get; } = L2CacheSizeWithDefault("32M");

    /// <summary><c>--l2-cache-size=SIZE</c> for a command whose default differs (convert's, which walks in disk order).</summary>
    public static CliOption<long> L2CacheSizeWithDefault(string defaultSize) => new('\0', "l2-cache-size", "SIZE",
        $"bytes of L2 tables to keep in memory (default {defaultSize}; at least one table slice is kept)",
        v => SizeParser.ParseArgument(v, "L2 cache size"));

    /// <summary>
    /// A cache-mode option (qemu's <c>-t</c> and <c>-T</c>). The modes are qemu's: none (or off), writeback,
    /// writethrough, directsync, unsafe. qed accepts them for compatibility: it has no O_DIRECT and always goes through
    /// the host page cache.
    /// </summary>
    /// <param name="letter">The letter (<c>t</c> or <c>T</c>).</param>
    /// <param name="longName">The long name, or null.</param>
    /// <param name="help">The help line.</param>
    /// <param name="refusal">The message of the tool being imitated for a mode it does not know.</param>
    /// <param name="checkLater">True when qemu-img checks the mode after its getopt loop rather than when it meets it.</param>
    public static CliOption<string> CacheMode(char letter, string? longName, string help, Func<string, string> refusal, bool checkLater)
    {
        string Check(string mode) => CacheModes.IsValid(mode) ? mode : throw new CliException(refusal(mode));
        return checkLater
            ? new CliOption<string>(letter, longName, "CACHE", help, v => v, v => Check(v))
            : new CliOption<string>(letter, longName, "CACHE", help, Check);
    }
}

/// <summary>qemu's cache modes (<c>bdrv_parse_cache_mode</c>).</summary>
internal static class CacheModes
{
    /// <summary>True for the modes qemu accepts: none (or its alias off), writeback, writethrough, directsync, unsafe.</summary>
    public static bool IsValid(string mode) => mode is "none" or "off" or "writeback" or "writethrough" or "directsync" or "unsafe";

    /// <summary>True for the modes that bypass the host page cache in qemu (what aio=native requires).</summary>
    public static bool IsDirect(string mode) => mode is "none" or "off" or "directsync";
}
