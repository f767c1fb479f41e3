namespace Qed.Nbd.Server;

/// <summary>The transmission phase of one connection: requests read, run concurrently, replies written as they complete.</summary>
internal static class NbdTransmissionLoop
{
    /// <summary>
    /// Serves <paramref name="session"/> until the client sends DISC or closes, or <paramref name="cancellationToken"/>
    /// asks the server to stop; in every case the requests already received are finished and answered first.
    /// </summary>
    public static Task RunAsync(NbdSession session, NbdServerContext server, CancellationToken cancellationToken) =>
        throw new NotImplementedException("transmission: owned by the transmission branch");
}
