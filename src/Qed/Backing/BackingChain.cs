using Qed.Image;
using Qed.IO;

namespace Qed.Backing;

/// <summary>Opens the backing files of one chain, resolving relative names and refusing loops and chains deeper than the limit.</summary>
internal sealed class BackingChain
{
    private readonly HashSet<string> _visited;
    private readonly int _depth;

    private BackingChain(HashSet<string> visited, int depth)
    {
        _visited = visited;
        _depth = depth;
    }

    /// <summary>A chain whose top image is <paramref name="topPath"/>.</summary>
    public static BackingChain Start(string topPath) => new(new HashSet<string>(StringComparer.Ordinal) { Path.GetFullPath(topPath) }, 0);

    /// <summary>Resolves a backing name as QEMU does: relative names against the directory of the image that names them.</summary>
    public static string Resolve(string imagePath, string backingName)
    {
        if (Path.IsPathRooted(backingName))
        {
            return backingName;
        }
        string? directory = Path.GetDirectoryName(imagePath);
        return string.IsNullOrEmpty(directory) ? backingName : Path.Combine(directory, backingName);
    }

    /// <summary>Opens one backing file read-only, as <paramref name="format"/> or probed when null, with its own chain below it.</summary>
    public async ValueTask<BlockDevice> OpenBackingAsync(string path, string? format, QedOpenOptions options, bool useAsync, CancellationToken cancellationToken)
    {
        if (path.Contains('\0', StringComparison.Ordinal))
        {
            throw new QedBackingFileException($"Could not open backing file: its name '{path.Replace("\0", "\\0", StringComparison.Ordinal)}' contains a NUL byte");
        }
        string full = Path.GetFullPath(path);
        if (_visited.Contains(full))
        {
            throw new QedBackingFileException($"Backing file '{path}' creates an infinite loop.");
        }
        if (_depth + 1 > options.MaxBackingDepth)
        {
            throw new QedBackingFileException($"Backing chain is deeper than {options.MaxBackingDepth} images at '{path}'");
        }
        var below = new BackingChain(new HashSet<string>(_visited, StringComparer.Ordinal) { full }, _depth + 1);
        try
        {
            return await DiskImage.OpenCoreAsync(path, format, options with { ReadOnly = true }, below, useAsync, cancellationToken).ConfigureAwait(false);
        }
        catch (QedBackingFileException)
        {
            throw;
        }
        catch (QedException e)
        {
            throw new QedBackingFileException($"Could not open backing file: {e.Message}", e);
        }
    }
}
