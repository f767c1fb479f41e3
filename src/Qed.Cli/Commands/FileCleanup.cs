namespace Qed.Cli.Commands;

/// <summary>Removing what a failed command left behind.</summary>
internal static class FileCleanup
{
    /// <summary>
    /// Deletes <paramref name="path"/> if it exists; a failure to delete is ignored, because the error that made the
    /// command clean up is the one worth reporting.
    /// </summary>
    public static void DeleteQuietly(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }
}
