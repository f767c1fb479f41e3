using System.Globalization;

namespace Qed.Cli.Commands.Serve;

/// <summary>The <c>--pid-file</c>: the server's process id, written once it listens and removed when it exits.</summary>
internal sealed class PidFile : IDisposable
{
    private readonly string _path;
    private readonly string _content;

    private PidFile(string path, string content)
    {
        _path = path;
        _content = content;
    }

    /// <summary>Writes this process's id to <paramref name="path"/> (through a new file renamed over it, so a reader never sees it half written).</summary>
    /// <exception cref="CliException">The file cannot be written; qemu-nbd's wording.</exception>
    public static PidFile Write(string path)
    {
        string content = Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "\n";
        string full = Path.GetFullPath(path);
        string temporary = Path.Combine(Path.GetDirectoryName(full) ?? ".", $".{Path.GetFileName(full)}.{Environment.ProcessId}.tmp");
        try
        {
            File.WriteAllText(temporary, content);
            File.Move(temporary, full, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            FileCleanup.DeleteQuietly(temporary);
            throw new CliException($"Could not create '{path}': {Reason(e)}");
        }
        return new PidFile(full, content);
    }

    /// <summary>strerror's words for the usual failures, as qemu-nbd prints them.</summary>
    private static string Reason(Exception e) => e switch
    {
        DirectoryNotFoundException or FileNotFoundException => "No such file or directory",
        UnauthorizedAccessException => "Permission denied",
        _ => Program.Describe(e),
    };

    /// <summary>Removes the file, unless another process has written its own id there since.</summary>
    public void Dispose()
    {
        try
        {
            if (File.ReadAllText(_path) == _content)
            {
                File.Delete(_path);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }
}
